"""Recommended settings for the embedded world model (32 px, 8x8x8 latents), chosen on its tuning concepts only
(never concepts.HELD_OUT): docs/benchmarks.md (time to quality) has their figures, CHANGELOG.md the comparisons."""

# why: the paper's batch, 4x its base lr, a 600-step stopping window: within 0.035 of its 5,000-step word, 14% of steps
WORLD_DEFAULTS = {
    "learn": {"steps": 1250, "batch_size": 4, "lr": 2e-2, "val_every": 25, "min_steps": 150, "val_window": 24},
    "generate": {"steps": 25, "guidance": 5.0},
}
