"""A rule-based guess of the task a chat request asks for; the user can always override it.

The words come from each task's spec (`TaskSpec.phrases`), so a task of the user's own takes part as
soon as it declares them; what came with the request (an image, a painted mask) decides the rest.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from mtu.config import BUILTIN_TASKS, TaskSpec, as_task_spec


@functools.lru_cache(maxsize=64)
def _pattern(phrases: tuple[str, ...]) -> re.Pattern:
    return re.compile(r"\b(" + "|".join(f"(?:{phrase})" for phrase in phrases) + r")\b")


def guess_task(
    text: str, has_image: bool, has_mask: bool = False, tasks: Sequence[TaskSpec | str] | None = None
) -> str:
    """Guess the task of a request from its wording and what came with it.

    Rules: the task whose phrases match earliest in the request wins; at the same place, the task the
    inputs fit (a painted mask fits a masked-image task, its absence the others), then the longer match,
    then the task listed first. With no phrase matched: a painted mask -> the masked-image task (inpaint);
    an image with no text -> a task the image alone defines (image conditioning, optional prompt: sr);
    anything else -> a task without conditioning (t2i), or the first task.

    Args:
        text: the user's request.
        has_image: whether an input image comes with it.
        has_mask: whether a mask was painted on that image.
        tasks: the model's task specs, or built-in task names (None: every built-in task).

    Returns:
        a task name.

    Example:
        >>> guess_task("make the red circle blue", has_image=True)
        'edit'
    """
    specs = [as_task_spec(task) for task in tasks] if tasks is not None else list(BUILTIN_TASKS.values())
    words = " ".join(text.lower().split())
    masked = has_image and has_mask
    best = None
    for index, spec in enumerate(specs):
        match = _pattern(spec.phrases).search(words) if spec.phrases else None
        if match is not None:
            fits = (spec.conditioning == "masked_image") == masked
            key = (match.start(), not fits, match.start() - match.end(), index)
            best = min(best or (key, spec.name), (key, spec.name))
    if best is not None:
        return best[1]
    return _by_inputs(specs, has_image, masked, bool(words))


def _by_inputs(specs: list[TaskSpec], has_image: bool, masked: bool, has_text: bool) -> str:
    """The task what came with a request asks for when its words name none."""
    preferences = []
    if masked:
        preferences.append(lambda spec: spec.conditioning == "masked_image")
    if has_image and not has_text:
        preferences.append(lambda spec: spec.conditioning == "image" and spec.prompt == "optional")
    preferences.append(lambda spec: spec.conditioning == "none")
    for wanted in preferences:
        found = next((spec.name for spec in specs if wanted(spec)), None)
        if found is not None:
            return found
    return specs[0].name
