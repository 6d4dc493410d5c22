"""A rule-based guess of the task a chat request asks for; the user can always override it."""

from __future__ import annotations

import re
from collections.abc import Sequence

# Phrasings per task, checked in this order (the first that matches wins). They follow the
# instruction templates of the Shapes world (`mtu.data.shapes.tasks`) plus common synonyms.
_PATTERNS: tuple[tuple[str, re.Pattern], ...] = (
    ("remove", re.compile(r"\b(remove|delete|erase|get rid of|take (away|out))\b")),
    (
        "sr",
        re.compile(
            r"\b(upscale|upsample|enhance|super[- ]?res\w*|sharpen|enlarge|"
            r"(higher|increase( the)?|more) resolution)\b"
        ),
    ),
    ("inpaint", re.compile(r"\b(fill|inpaint\w*)\b")),
    (
        "edit",
        re.compile(
            r"\b(make (it|them|this|that|the|all|everything|its)|turn|change|recolou?r|paint|"
            r"replace|swap|move|shift|slide|convert)\b"
        ),
    ),
)


def guess_task(text: str, has_image: bool, has_mask: bool = False, tasks: Sequence[str] | None = None) -> str:
    """Guess the task of a request from its wording and what came with it.

    Rules, first match wins: "remove/delete/erase ..." -> remove; "upscale/enhance ..." -> sr;
    "fill/inpaint ..." or a painted mask -> inpaint; "make it/the ...", "turn", "change", "replace",
    "move" ... -> edit; an image with no text -> sr; anything else -> t2i. A guess the model does not
    serve falls back to t2i (or the first task served).

    Args:
        text: the user's request.
        has_image: whether an input image comes with it.
        has_mask: whether a mask was painted on that image.
        tasks: the task names the model serves (None: all built-in ones).

    Returns:
        a task name.

    Example:
        >>> guess_task("make the red circle blue", has_image=True)
        'edit'
    """
    words = " ".join(text.lower().split())
    guess = next((task for task, pattern in _PATTERNS if pattern.search(words)), None)
    if guess in (None, "edit") and has_image and has_mask:
        guess = "inpaint"  # a painted mask is the clearest signal there is
    if guess is None:
        guess = "sr" if has_image and not words else "t2i"
    if tasks is not None and guess not in tasks:
        guess = "t2i" if "t2i" in tasks else tasks[0]
    return guess
