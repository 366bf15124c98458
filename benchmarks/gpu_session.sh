#!/bin/bash
# The GPU figures docs/benchmarks.md reports. Each step has its own time limit and appends to $OUT/all.log;
# speed.py rewrites its JSON after every row, so a stopped step loses nothing it measured.
#   OUT=/tmp/gpu PARTS="graph kernels compile" bash benchmarks/gpu_session.sh [WORLD_INIT_DIR]
# A 15-minute device session runs it as three calls on one warm machine, each with its own $OUT, each issued at once
# after the last (a machine idle for 30 s goes back). On an H200 on 2026-11-28 (machine start ~40 s):
#   PARTS=graph                                  timeout_s 420: took 211 s (tests 55 s, 6 measurements)
#   PARTS="kernels compile" COMPILE_LIMIT=330    timeout_s 590: took 214 s (kernels 68 s; compile 132 s)
#   PARTS=compile_wide                           timeout_s 340: took 284 s (two compiles, ~125 s each)
# 780 s of device time in all. Earlier parts on an H200 (2026-11-27): speed ~4 min, ckpt ~45 s, world ~5 min.
# Pending (never run on a GPU yet): PARTS=sdxl, timeout_s ~600 (SDXL at 1024 px, below).
# Pending (never run on a GPU yet): PARTS=many, timeout_s ~600 (learn-many, 32 concepts, below).
# Pending (never run on a GPU yet): PARTS=learn, timeout_s ~600 (`oneword learn` wall time on SD1.5, load included).
# Pending (never run on a GPU yet): PARTS="graph bound", timeout_s ~420 -- graph re-measures the graphed step with
# cuDNN autotuning on in learn() and the eager first-step sync fixed; bound is the batch-64 profile's bound.
# Needs python3 with torch (CUDA), diffusers, transformers; wheels in .whl/ are installed first if present.
set -u
OUT=${OUT:-/tmp/oneword-gpu}
PARTS=${PARTS:-graph kernels compile}
INIT=${1:-oneword/world}
J=$OUT/json  # speed.py's JSON files, shipped back as one tar (the device returns at most 8 files)
mkdir -p "$OUT" "$J"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 1
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:-$PWD}
LOG=$OUT/all.log
step() { local limit=$1; shift; echo "### $(date +%T) $*" | tee -a "$LOG"; timeout "$limit" "$@" 2>&1 | tee -a "$LOG"; }
want() { [[ " $PARTS " == *" $1 "* ]]; }
SD="--model sd15 --device cuda"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$LOG"
python3 -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)" 2>&1 | tee -a "$LOG"

# CUDA graphs (oneword.cuda_graph): the GPU tests first (graph == eager, fallback, fp16, no host syncs), then oneword
# (graphed), the same loop eager, and the reference loop side by side at the two batches the targets name
if want graph; then
  step 120 python3 -m pytest -q -p no:cacheprovider tests/test_graphs.py -rs
  step 270 python3 -m benchmarks.speed $SD --batch 4 64 --steps 10 --systems oneword oneword-eager reference \
    --json "$J/graph.json"
fi
# kernels at batch 32, in one process (shared imports and cuDNN's algorithm cache): where an eager step's device
# time goes (top kernels), then the graphed step as shipped, with channels-last convolutions, with cuDNN attention
if want kernels; then
  step 200 python3 - "$J" "$OUT/profile.txt" <<'PY'
import sys, traceback
from benchmarks.speed import main
j, prof = sys.argv[1:3]
base = ["--model", "sd15", "--device", "cuda", "--batch", "32"]
runs = [("profile", ["--steps", "3", "--systems", "oneword-eager", "--profile", prof]),
        ("b32", ["--steps", "10", "--systems", "oneword"]),
        ("b32_channels_last", ["--steps", "10", "--systems", "oneword", "--channels-last"]),
        ("b32_sdpa_cudnn", ["--steps", "10", "--systems", "oneword", "--sdpa", "cudnn"])]
for name, extra in runs:
    try:
        main(base + extra + ["--json", f"{j}/{name}.json"])
    except Exception:  # one variant failing (say, no cuDNN attention kernel for this shape) must not stop the rest
        traceback.print_exc()
PY
fi
# the bound on the best batch: an eager step's device time at batch 64 split into attention / convolution / matmul
# kernels and everything else (benchmarks/profile_bound.py; the batch-32 table of benchmarks/results/h200-2026-11-28/
# bounds it at 292 img-steps/s)
if want bound; then
  step 150 python3 -m benchmarks.speed $SD --batch 64 --steps 3 --systems oneword-eager --profile "$OUT/profile64.txt" \
    --json "$J/bound.json"
  step 20 python3 -m benchmarks.profile_bound "$OUT/profile64.txt"
fi
# throughput and peak memory, oneword vs the reference loop, at more batches
want speed && step 300 python3 -m benchmarks.speed $SD --batch 4 16 32 64 --steps 10 --json "$J/speed.json"
# the 4 GB option: UNet gradient checkpointing
want ckpt && step 90 python3 -m benchmarks.speed $SD --batch 1 4 --steps 20 --systems oneword --grad-checkpointing \
  --json "$J/ckpt.json"
# the world model: a GPU warm start (VAE kept, UNet batch 512), shipped back as one tar
if want world; then
  step 330 python3 -m oneword world pretrain --out /tmp/world_gpu --seed 3 --minutes 3.5 --init-from "$INIT" \
    --keep-vae --unet-batch 512
  [ -d /tmp/world_gpu/model ] && tar -C /tmp/world_gpu -cf "$OUT/world_gpu.tar" model judge
fi
# `oneword learn` as a user runs it on SD1.5 (pending: never run on a GPU yet): a random SD1.5 single file (fp16,
# original key layout, ~2 GB: speed does not depend on weight values), 5 rendered 512 px photos, the shipped defaults
# (at most 2,000 steps, batch 4, early stopping); the wall time includes interpreter start, model load and saving
if want learn; then
  step 240 python3 - <<'PY'
from pathlib import Path
from oneword.tiny_models import write_random_checkpoint
from oneword.world.concepts import concept
Path("/tmp/sd15_photos").mkdir(exist_ok=True)
for i, photo in enumerate(concept("teal_ring").photos(5, size=512)):
    photo.save(f"/tmp/sd15_photos/{i}.png")
write_random_checkpoint("/tmp/sd15.safetensors", "sd1", "full")
PY
  step 420 bash -c 'TIMEFORMAT="wall %R s (interpreter start, load, learning, saving)"; time python3 -m oneword learn \
    /tmp/sd15_photos --model /tmp/sd15.safetensors --token "<w>" --init ring --device cuda --out /tmp/sd15_word'
  python3 -c "import json; r = json.load(open('/tmp/sd15_word/run.json')); print({k: r.get(k) for k in ('status', 'step', 'image_steps_per_s', 'elapsed_s', 'engine')})" 2>&1 | tee -a "$LOG"
fi
# SDXL at 1024 px (SDXL base's architecture, random weights; pending: never run on a GPU yet): oneword against
# diffusers' textual_inversion_sdxl.py loop side by side at batch 1 and 4, oneword alone at larger batches (the best
# batch), then batch 1 with --grad-checkpointing (does a word fit a 12 GB card: its peak and reserved memory)
if want sdxl; then
  step 330 python3 -m benchmarks.speed --model sdxl --device cuda --batch 1 4 --steps 10 --json "$J/sdxl.json"
  step 200 python3 -m benchmarks.speed --model sdxl --device cuda --batch 8 16 --steps 10 --systems oneword \
    --json "$J/sdxl_best.json"
  step 120 python3 -m benchmarks.speed --model sdxl --device cuda --batch 1 --steps 10 --systems oneword \
    --grad-checkpointing --json "$J/sdxl_ckpt.json"
fi
# torch.compile (inductor's fused kernels, default mode: no cudagraphs of its own) inside oneword's own CUDA graph at
# batch 32, for the compute-bound side (compiling the UNet's forward and backward takes minutes: it runs last and gets
# the time that is left; COMPILE_LIMIT seconds)
want compile && step "${COMPILE_LIMIT:-300}" python3 -m benchmarks.speed $SD --batch 32 --steps 10 --systems oneword \
  --compile --json "$J/compile.json"
# the same at the two batches the targets name (each compiles anew: ~2 min each)
want compile_wide && step 320 python3 -m benchmarks.speed $SD --batch 64 4 --steps 10 --systems oneword --compile \
  --json "$J/compile_wide.json"
# learn-many (oneword.many): 32 SD1.5-architecture concepts at batch 4 each, slots from free memory, one CUDA graph
# throughout; concepts per GPU-hour against sequential learn and the diffusers example (its README: 3,000 steps of 4
# images per concept). Then its tests on this machine. Expected ~5 min on an H200 (never run on a GPU yet).
if want many; then
  step 420 python3 -m benchmarks.speed $SD --batch 4 --many 32 --many-steps 200 --many-sequential 2 --steps 10 \
    --json "$J/many.json"
  step 150 python3 -m pytest -q -p no:cacheprovider tests/test_many.py -rs
fi
tar -C "$OUT" -cf "$OUT/json.tar" json && rm -r "$J"
echo "### $(date +%T) done" | tee -a "$LOG"
