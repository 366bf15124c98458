"""Recommended settings for the embedded world model (32 px, 8x8x8 latents), chosen on its tuning concepts
(never concepts.HELD_OUT). Evidence on the current model (v5, run 6): docs/benchmarks.md (time to quality) —
300 steps match the paper's 5,000 on both axes; docs/quality.md — 200 steps ("steps 2/3") were slightly better
on both axes for the tuning concepts (sampling noise only) but not on the held-out ones (editability -0.007,
n.s.), so the default stays at 300."""

WORLD_DEFAULTS = {
    "learn": {"steps": 300, "batch_size": 4, "lr": 5e-3, "val_every": 25, "min_steps": 150},
    "generate": {"steps": 25, "guidance": 5.0},
}
