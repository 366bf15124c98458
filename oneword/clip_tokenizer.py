"""CLIP tokenizer files without a hub: the real CLIP BPE vocabulary, and small whole-word vocabularies.

transformers' CLIPTokenizer reads a vocab.json / merges.txt pair. We ship OpenAI's BPE merges (from
open_clip) and write that pair on demand, which gives exactly the hub tokenizer's ids. The embedded world
model's much smaller vocabulary is built by oneword.world.vocab.write_world_tokenizer.
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

SPECIAL = ("<|startoftext|>", "<|endoftext|>")


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable-character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _write(dest: Path, vocab: dict[str, int], merges: list[str], max_length: int) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (dest / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    (dest / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": SPECIAL[0], "eos_token": SPECIAL[1], "unk_token": SPECIAL[1], "pad_token": SPECIAL[1]})
    )
    (dest / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "CLIPTokenizer",
                "model_max_length": max_length,
                "do_lower_case": True,
                "bos_token": SPECIAL[0],
                "eos_token": SPECIAL[1],
                "unk_token": SPECIAL[1],
                "pad_token": SPECIAL[1],
            }
        )
    )
    return dest


def write_clip_tokenizer(dest: str | Path, max_length: int = 77) -> Path:
    """Write the real CLIP ViT-L/14 tokenizer (49,408 ids) into `dest`."""
    with resources.files("oneword.assets.clip_tokenizer").joinpath("bpe_simple_vocab_16e6.txt.gz").open("rb") as f:
        lines = gzip.decompress(f.read()).decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    base = list(bytes_to_unicode().values())
    tokens = base + [b + "</w>" for b in base] + ["".join(m.split()) for m in merges] + list(SPECIAL)
    return _write(Path(dest), {t: i for i, t in enumerate(tokens)}, merges, max_length)
