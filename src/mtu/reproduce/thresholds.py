"""The bars a task's model must pass (the pilot's, also the claims'): fixed before any result (docs/reproduction.md)."""

PSNR_MARGIN_DB = 2.0  # over the task's no-learning baseline
ALL_CORRECT_BAR = 0.5  # parser all-correct
