"""Recommended settings for the embedded world model (32 px, 8x8x8 latents), chosen on its tuning concepts
(never concepts.HELD_OUT). Evidence on the current model (v5, run 6): docs/benchmarks.md (time to quality).
Read by the session-5 judge, 300 steps matched the paper's 5,000 on both axes. Read by the judge-language CLIP
(session 6), which also sees patterns and rewards the long run's style words, the paper setting reconstructs
0.065 better (editability 0.011 worse, n.s.); no candidate with early stopping reaches it at <= 5,000
image-steps, 1,250 steps without early stopping are within noise (benchmarks/default_candidates.py), so the
default stays at 300 until a stopping rule that does not cut style words short is found.
docs/quality.md: 150 steps ("steps /2") were as good on reconstruction and better on editability for the
tuning concepts, not on the held-out ones (n.s.)."""

WORLD_DEFAULTS = {
    "learn": {"steps": 300, "batch_size": 4, "lr": 5e-3, "val_every": 25, "min_steps": 150},
    "generate": {"steps": 25, "guidance": 5.0},
}
