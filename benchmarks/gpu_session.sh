#!/bin/bash
# The GPU figures docs/benchmarks.md reports, and a GPU warm start of the world model. Each part has its own time
# limit and appends to $OUT/all.log; speed.py rewrites its JSON after every row, so a stopped part loses nothing.
#   OUT=/tmp/gpu PARTS="speed ckpt" bash benchmarks/gpu_session.sh [WORLD_INIT_DIR]
# What each part took on an H200 (2026-11-27, one machine start ~1 min on top): speed ~4 min, ckpt ~45 s, world
# ~5 min (render 25 s, --minutes 3.5, save), compile > 100 s per batch size (did not finish in 100 s). Not run yet
# (estimated from ~25-35 s per speed.py measurement): graph ~5 min, profile ~40 s, layout ~2 min, compile cut at
# 3.3 min. The default PARTS, "graph profile layout compile", is ~11 min: more than one device call may run (10 min),
# so a 15-minute session runs it as two calls on the warm machine, each with its own $OUT:
#   PARTS="graph" (timeout_s 420), then PARTS="profile layout compile" (timeout_s 420)
# Needs python3 with torch (CUDA), diffusers, transformers; wheels in .whl/ are installed first if present.
set -u
OUT=${OUT:-/tmp/oneword-gpu}
PARTS=${PARTS:-graph profile layout compile}
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

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$LOG"
python3 -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)" 2>&1 | tee -a "$LOG"

# CUDA graphs (oneword.graphs): the GPU tests first (graph == eager, fallback, fp16), then oneword (graphed), the same
# loop eager, and the reference loop side by side on SD1.5's architecture at the two batches the targets name
if want graph; then
  step 150 python3 -m pytest -q -p no:cacheprovider tests/test_graphs.py -rs
  step 360 python3 benchmarks/speed.py --model sd15 --device cuda --batch 4 64 --steps 10 \
    --systems oneword oneword-eager reference --json "$J/graph.json"
  step 60 python3 benchmarks/speed.py --model sd15 --device cuda --batch 16 --steps 10 --systems oneword \
    --json "$J/graph_b16.json"
fi
# kernels choices at batch 32 (graphed): as shipped, channels-last convolutions, cuDNN's attention
if want layout; then
  for flags in "" "--channels-last" "--sdpa cudnn"; do
    name=$(echo "b32 $flags" | tr -c 'a-z0-9\n' '_')
    step 75 python3 benchmarks/speed.py --model sd15 --device cuda --batch 32 --steps 10 --systems oneword $flags \
      --json "$J/layout_$name.json"
  done
fi
# where device time goes at batch 32 (the >= 300 img-steps/s target is compute, not launches): top kernels
want profile && step 90 python3 benchmarks/speed.py --model sd15 --device cuda --batch 32 --steps 3 \
  --systems oneword-eager --profile "$OUT/profile.txt" --json "$J/profile.json"
# throughput and peak memory, oneword vs the reference loop, SD1.5 architecture at 512 px
want speed && step 300 python3 benchmarks/speed.py --model sd15 --device cuda --batch 4 16 32 64 --steps 10 \
  --json "$J/speed.json"
# the 4 GB option: UNet gradient checkpointing
want ckpt && step 90 python3 benchmarks/speed.py --model sd15 --device cuda --batch 1 4 --steps 20 --systems oneword \
  --grad-checkpointing --json "$J/ckpt.json"
# the world model: a GPU warm start (VAE kept, UNet batch 512), shipped back as one tar
if want world; then
  step 330 python3 -m oneword.cli world pretrain --out /tmp/world_gpu --seed 3 --minutes 3.5 --init-from "$INIT" \
    --keep-vae --unet-batch 512
  [ -d /tmp/world_gpu/model ] && tar -C /tmp/world_gpu -cf "$OUT/world_gpu.tar" model judge
fi
# torch.compile (inductor's fused kernels, default mode: no cudagraphs of its own) inside oneword's own CUDA graph at
# batch 32, for the compute-bound side (compiling the UNet's forward and backward takes minutes: it runs last)
want compile && step 200 python3 benchmarks/speed.py --model sd15 --device cuda --batch 32 --steps 10 --systems oneword \
  --compile --json "$J/compile.json"
tar -C "$OUT" -cf "$OUT/json.tar" json && rm -r "$J"
echo "### $(date +%T) done" | tee -a "$LOG"
