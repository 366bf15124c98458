"""Recommended settings for the embedded world model (32 px, 8x8x8 latents), chosen on its tuning concepts
(never concepts.HELD_OUT). Evidence on the current model: docs/benchmarks.md (time to quality) — 300 steps
match the paper's 5,000 on both axes; docs/quality.md — 100 to 600 steps are within 0.01 reconstruction,
and 100 ("steps /3") was slightly better on editability for the tuning concepts but not on the held-out
ones, so the default stays at 300."""

WORLD_DEFAULTS = {
    "learn": {"steps": 300, "batch_size": 4, "lr": 5e-3, "val_every": 25, "min_steps": 150},
    "generate": {"steps": 25, "guidance": 5.0},
}
