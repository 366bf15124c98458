"""The world model's worst case on the CPU (the rule fires only at the 1,250-step cap: style_hatched, seed 0) with
the validation batch in chunks of the training batch (as on a GPU) and in one piece (the CPU's way), alternated in
one process; each run's learning seconds and its last validation loss (the two ways must agree on it).
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/validation_chunks.py --repeat 2
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch


def main(argv=None) -> int:
    from oneword import invert
    from oneword.models import load_model
    from oneword.world.concepts import concept

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(None, device="cpu")
    photos = concept("style_hatched").photos(5, seed=0)
    cfg = invert.LearnConfig.with_defaults(model, token="<style-hatched>", property="style", init="painting")
    original = invert.Validator.__init__
    for _ in range(args.repeat):
        for label, chunk in ((f"chunks of {cfg.batch_size}", cfg.batch_size), ("one piece", None)):
            invert.Validator.__init__ = lambda self, *a, **k: original(self, *a, **{**k, "chunk": chunk})
            with tempfile.TemporaryDirectory() as out:
                t = time.perf_counter()
                invert.learn(model, photos, cfg, out, progress=False)
                run = json.loads((Path(out) / "run.json").read_text())
            print(f"{label}: {run['step']} steps in {time.perf_counter() - t:.1f} s, last validation loss "
                  f"{run['early_stopping']['val_losses'][-1]:.6f}", flush=True)
    invert.Validator.__init__ = original
    return 0


if __name__ == "__main__":
    sys.exit(main())
