"""Count the ATen operations one `oneword learn` step issues on SD1.5's architecture (CPU, 64 px, batch 1).

Each is a kernel launch (or a cheap view) on a GPU, where eager PyTorch spends ~10 us of host time per op;
so this count times ~10 us is the per-step overhead that no batch size amortises at small batches and that a
CUDA graph removes.    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/op_count.py
"""
import sys, tempfile, torch
sys.path.insert(0, ".")
from torch.profiler import profile, ProfilerActivity
torch.set_num_threads(1)
from benchmarks.sd15 import build_sd15
import oneword.invert as inv
from benchmarks.speed import synthetic_photos, TOKEN
model = build_sd15("cpu", torch.float32)
photos = synthetic_photos(5, 64)
def leaf_ops(steps):
    cfg = inv.LearnConfig.with_defaults(model, token=TOKEN, steps=steps, batch_size=1, early_stop=False,
                                        save_every=10**9, preview_every=0, resolution=64)
    with tempfile.TemporaryDirectory() as out, profile(activities=[ProfilerActivity.CPU]) as prof:
        inv.learn(model, photos, cfg, out, progress=False)
    return sum(1 for e in prof.events() if e.name.startswith("aten::") and not any(c.name.startswith("aten::") for c in e.cpu_children))
leaf_ops(1)
a, b = leaf_ops(1), leaf_ops(3)
print("leaf aten ops per learning step (SD1.5 architecture):", (b - a) / 2)
