"""The words of the Shapes world: every word its captions, instructions and phrasings can produce.

The tokenizer of the shipped model is built from `vocabulary` (`mtu.pretrain.tokenizer`). It reads the
phrasings of both the world (captions) and the tasks (instructions), so it lives beside them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from mtu.data.shapes.tasks import DESTINATION_PHRASES, INSTRUCTION_TEMPLATES
from mtu.data.shapes.world import (
    BACKGROUND_PHRASES,
    BACKGROUNDS,
    COLORS,
    EMPTY_SCENE_PHRASES,
    POSITION_PHRASES,
    POSITIONS,
    SHAPES,
    words,
)


def _phrase_words(phrases: Iterable[str]) -> set[str]:
    # Placeholders ("{}", "{target}") are filled with words counted elsewhere.
    return {word for phrase in phrases for word in words(re.sub(r"\{\w*\}", " ", phrase))}


def vocabulary() -> list[str]:
    """Every lowercase word a caption, instruction or phrasing of `mtu.data.shapes` can produce.

    Words are split by `words` (whitespace, with "," and "." removed). The tokenizer of the shipped
    model is built from this list, so a new phrasing anywhere in the package must add its words here.

    Returns:
        Sorted list of unique words.
    """
    vocab: set[str] = {"a", "an", "and"}
    vocab |= set(SHAPES) | _phrase_words(COLORS) | _phrase_words(BACKGROUNDS) | _phrase_words(POSITIONS)
    vocab |= _phrase_words(p for phrases in POSITION_PHRASES.values() for p in phrases)
    vocab |= _phrase_words(BACKGROUND_PHRASES) | _phrase_words(EMPTY_SCENE_PHRASES)
    vocab |= _phrase_words(template for templates in INSTRUCTION_TEMPLATES.values() for template in templates)
    vocab |= _phrase_words(p for phrases in DESTINATION_PHRASES.values() for p in phrases)
    return sorted(vocab)
