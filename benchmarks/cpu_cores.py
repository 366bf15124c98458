"""Can a second CPU core make the world model's learning step faster? (issue 5: <= 60 s on 2 CPU cores)

`oneword.models` runs small models on one thread (OpenMP spin-waits cost 30x when the other cores are busy). This
times one learning step of the world model at its defaults (batch 4: text encoder and UNet forward, the loss, the
gradient of the new vector), alternated in one process, three ways:
  1 thread            what `oneword learn` does
  2 intra-op threads  torch.set_num_threads(2): each op split over both cores
  2 Python threads    the batch in two halves, each on its own thread with one intra-op thread (the gradient is
                      the same up to float rounding; the GIL serialises the Python between the ops)
and, first, what one read of the model's dtype costs (read on every learning step): diffusers' `unet.dtype` walks
every submodule, `FrozenModel.dtype` reads the UNet's first weight.
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/cpu_cores.py --repeat 3
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import timeit
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None) -> int:
    from oneword import invert
    from oneword.models import load_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="alternating rounds; the median is reported")
    ap.add_argument("--steps", type=int, default=50, help="timed steps per round and way")
    args = ap.parse_args(argv)
    model = load_model(None, device="cpu")
    for label, read in (("diffusers unet.dtype", lambda: model.unet.dtype), ("FrozenModel.dtype", lambda: model.dtype)):
        print(f"one read of {label}: {timeit.timeit(read, number=200) / 200 * 1e6:.1f} us")
    schedule = invert._training_schedule(model)
    vectors = torch.nn.Parameter(invert.init_vectors(model, "object", 1).clone())
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(4, model.unet.config.in_channels, 8, 8, generator=g)
    noise = torch.randn(latents.shape, generator=g)
    timesteps = torch.randint(0, 1000, (4,), generator=g)
    pool = ThreadPoolExecutor(2)

    with invert.learned_word(model, "<bench>", vectors) as tokenizer:
        ids = invert.encode_templates(tokenizer, "object", "<bench>", 1)[:4]

        def grad(rows: slice) -> torch.Tensor:
            loss = invert.diffusion_loss(model, schedule, latents[rows], noise[rows], timesteps[rows], ids[rows])
            return torch.autograd.grad(loss * (rows.stop - rows.start) / 4, vectors)[0]

        ways = {"1 thread": (1, lambda: grad(slice(0, 4))),
                "2 intra-op threads": (2, lambda: grad(slice(0, 4))),
                # with one intra-op thread (process-wide) each Python thread runs its ops inline, on its own core
                "2 Python threads, half the batch each": (1, lambda: sum(pool.map(grad, (slice(0, 2), slice(2, 4)))))}
        torch.set_num_threads(1)
        whole, split = grad(slice(0, 4)), ways["2 Python threads, half the batch each"][1]()
        print(f"gradient, whole batch vs two halves: max difference {(whole - split).abs().max():.2e} "
              f"(largest entry {whole.abs().max():.2e})")
        times = {w: [] for w in ways}
        for _ in range(args.repeat):
            for way, (threads, step) in ways.items():
                torch.set_num_threads(threads)
                for _ in range(3):
                    step()
                started = time.perf_counter()
                for _ in range(args.steps):
                    step()
                times[way].append((time.perf_counter() - started) / args.steps * 1e3)
    base = statistics.median(times["1 thread"])
    for way, ms in times.items():
        print(f"{way:40s} {statistics.median(ms):6.1f} ms/step (rounds {', '.join(f'{t:.1f}' for t in ms)})  "
              f"{base / statistics.median(ms):.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
