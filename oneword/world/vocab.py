"""The world's tokenizer: a CLIPTokenizer in which every world word is exactly one token.

A merge list that simply spells each word left to right is not enough: BPE applies the lowest-ranked
merge first, so a merge made for "and" fires inside "sand", "orange" or "large" and those words end up
in pieces. Here merges are added word by word *after* simulating CLIP's BPE on the merges so far: the
new merges rank above every earlier one, so they only act once the old ones are exhausted, and words
already made whole stay whole.
"""

from __future__ import annotations

from pathlib import Path

from ..clip_tokenizer import SPECIAL, _write, bytes_to_unicode


def _bpe(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """CLIP's BPE on one word (same rule as transformers' CLIPTokenizer.bpe)."""
    word = list(symbols)
    while len(word) > 1:
        pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
        best = min(pairs, key=lambda p: ranks.get(p, float("inf")))
        if best not in ranks:
            break
        a, b = best
        out, i = [], 0
        while i < len(word):
            if i < len(word) - 1 and word[i] == a and word[i + 1] == b:
                out.append(a + b)
                i += 2
            else:
                out.append(word[i])
                i += 1
        word = out
    return word


def write_world_tokenizer(dest: str | Path, words, max_length: int = 20) -> Path:
    """Write a CLIPTokenizer (byte alphabet + each of `words` as one token) into `dest`."""
    b2u = bytes_to_unicode()
    base = list(b2u.values())
    tokens = base + [b + "</w>" for b in base]
    seen = set(tokens)
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for word in sorted({w.lower() for w in words}):
        chars = [b2u[b] for b in word.encode("utf-8")]
        symbols = _bpe(chars[:-1] + [chars[-1] + "</w>"], ranks)
        left = symbols[0]
        for right in symbols[1:]:
            pair = (left, right)
            if pair not in ranks:
                ranks[pair] = len(merges)
                merges.append(pair)
            left = left + right
            if left not in seen:
                tokens.append(left)
                seen.add(left)
        assert _bpe(chars[:-1] + [chars[-1] + "</w>"], ranks) == [word + "</w>"], word
    tokens += list(SPECIAL)
    return _write(Path(dest), {t: i for i, t in enumerate(tokens)}, [f"{a} {b}" for a, b in merges], max_length)
