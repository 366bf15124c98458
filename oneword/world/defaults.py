"""Recommended settings for the embedded world model (32 px, 8x8x8 latents), chosen on its tuning concepts
(never concepts.HELD_OUT). Evidence: docs/quality.md — 300 steps ("steps /2") matched or beat 600 on both
reconstruction and editability (sampling-noise CIs exclude 0), so the default is 300."""

WORLD_DEFAULTS = {
    "learn": {"steps": 300, "batch_size": 4, "lr": 5e-3, "val_every": 25, "min_steps": 150},
    "generate": {"steps": 25, "guidance": 5.0},
}
