"""Recommended settings for the embedded world model (32 px, 8x8x4 latents), tuned on its novel concepts
(excluding concepts.HELD_OUT); the evidence is in docs/benchmarks.md ("time to quality")."""

WORLD_DEFAULTS = {
    "learn": {"steps": 600, "batch_size": 4, "lr": 5e-3, "val_every": 25, "min_steps": 150},
    "generate": {"steps": 25, "guidance": 5.0},
}
