"""How much each benchmark measures: `--quick` shrinks dimensions and repetitions to a smoke test."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Settings:
    """Args:
    quick: small dimensions and few repetitions (figures are produced, not meaningful).
    repeats: timed repetitions per variant (each figure is their median).
    warmup: untimed rounds before timing.
    threads: torch intra-op threads.
    model: a trained MTU model (folder or shipped name) for the figures that need one (deploy: quality per task).
    """

    quick: bool = False
    repeats: int = 7
    warmup: int = 1
    threads: int = 1
    model: str | None = None

    def __post_init__(self) -> None:
        if self.repeats < 1 or self.warmup < 0 or self.threads < 1:
            raise ValueError(f"repeats >= 1, warmup >= 0 and threads >= 1 are needed, got {self}")

    def scaled(self, repeats: int) -> Settings:
        """The same settings with fewer repetitions for an expensive measurement (never fewer than 3 in full mode)."""
        floor = 1 if self.quick else 3
        return replace(self, repeats=max(floor, min(self.repeats, repeats)))
