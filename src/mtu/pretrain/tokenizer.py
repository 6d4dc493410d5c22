"""A stock CLIP BPE tokenizer whose merges turn every word of a closed vocabulary into one token.

CLIP's BPE starts from byte-level characters (the last one of a word carries the ``</w>`` suffix) and
applies merges in rank order. We keep all 256 byte characters (so any text still tokenizes, character by
character) and add, per vocabulary word, just the merges that fuse it into a single ``word</w>`` token.

Example:
    >>> tokenizer = build_tokenizer(["a", "red", "circle"], max_length=16)
    >>> tokenizer.tokenize("a red circle")
    ['a</w>', 'red</w>', 'circle</w>']
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from transformers import CLIPTokenizer

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"

# A word the CLIP pre-tokenizer keeps whole: one run of letters (digits and punctuation are split off).
_SINGLE_PIECE_WORD = re.compile(r"[^\W\d_]+")


def bytes_to_unicode() -> dict[int, str]:
    """The byte -> printable character table of byte-level BPE (GPT-2, CLIP).

    Printable Latin-1 bytes map to themselves; the other 68 bytes map to code points from 256 upwards, so
    every token is a string of visible characters.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {byte: chr(byte) for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in table:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


def _initial_symbols(word: str, byte_chars: dict[int, str]) -> list[str]:
    chars = [byte_chars[b] for b in word.encode("utf-8")]
    return chars[:-1] + [chars[-1] + END_OF_WORD]


def apply_merges(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Classic BPE on one pre-tokenized word: repeatedly fuse the adjacent pair of lowest merge rank."""
    symbols = list(symbols)
    while len(symbols) > 1:
        pairs = [(ranks.get(pair, len(ranks)), i) for i, pair in enumerate(zip(symbols, symbols[1:]))]
        rank, _ = min(pairs)
        if rank == len(ranks):
            break
        best = next(pair for pair in zip(symbols, symbols[1:]) if ranks.get(pair) == rank)
        merged, i = [], 0
        while i < len(symbols):
            if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                merged.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return symbols


def whole_word_merges(words: list[str]) -> list[tuple[str, str]]:
    """Merges under which each word of `words` becomes one token.

    A word still split after the merges so far gets a new merge of its first two pieces, appended with
    the lowest priority. That can never split a word finished earlier: its BPE run always had a
    higher-priority merge available until it was a single token.
    """
    byte_chars = bytes_to_unicode()
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for word in words:
        while len(pieces := apply_merges(_initial_symbols(word, byte_chars), ranks)) > 1:
            ranks[(pieces[0], pieces[1])] = len(merges)
            merges.append((pieces[0], pieces[1]))
    return merges


def _check_words(words: list[str]) -> list[str]:
    unique = sorted(set(words))
    bad = [w for w in unique if not _SINGLE_PIECE_WORD.fullmatch(w) or w != w.lower()]
    if bad:
        raise ValueError(
            f"words {bad} cannot be single CLIP tokens: the CLIP pre-tokenizer lowercases text and splits "
            "digits and punctuation off letters; pass lowercase words made of letters only"
        )
    return unique


def build_tokenizer(words: list[str], max_length: int) -> CLIPTokenizer:
    """A `CLIPTokenizer` mapping each of `words` to one token (unknown text falls back to bytes).

    Args:
        words: lowercase words made of letters only (e.g. `mtu.data.shapes.vocabulary()`).
        max_length: `model_max_length`, counting the start and end tokens.

    Returns:
        The tokenizer; pad and unknown tokens are the end token, as in CLIP.

    Raises:
        ValueError: a word the CLIP pre-tokenizer would split, or a word that did not end up as one token.
    """
    words = _check_words(words)
    merges = whole_word_merges(words)
    base = list(bytes_to_unicode().values())
    tokens = base + [c + END_OF_WORD for c in base] + ["".join(pair) for pair in merges]
    tokens = list(dict.fromkeys(tokens)) + [BOS_TOKEN, EOS_TOKEN]
    vocab = {token: index for index, token in enumerate(tokens)}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)
    split = [w for w in words if len(tokenizer.tokenize(w)) != 1]
    if split:
        raise ValueError(f"internal error: words {split} do not map to one token; please report this")
    return tokenizer


def save_tokenizer(tokenizer: CLIPTokenizer, folder: str | Path) -> None:
    """Save `tokenizer` with both the fast file (tokenizer.json) and CLIP's vocab.json + merges.txt.

    transformers >= 5 writes only tokenizer.json; vocab.json and merges.txt keep the folder loadable by
    older `CLIPTokenizer` versions and by any byte-level BPE reader.
    """
    folder = Path(folder)
    tokenizer.save_pretrained(folder)
    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    (folder / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False, indent=1) + "\n")
    merges = [" ".join(pair) if isinstance(pair, list) else pair for pair in model["merges"]]
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
