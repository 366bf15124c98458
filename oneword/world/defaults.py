"""Recommended settings for the embedded world model (32 px, 8x8x8 latents), chosen on its tuning concepts
(never concepts.HELD_OUT). Evidence on the current model (v5, run 6): docs/benchmarks.md (time to quality).
The paper's batch and learning rate, at most 1,250 steps (5,000 image-steps, 1/4 of the paper's 20,000) with early
stopping (oneword.invert.Validator, a 16-validation window): over the 10 tuning concepts it stops after 400-750
steps (10.8% of the paper's image-steps) and is within noise of the paper setting's final word (reconstruction
-0.015 [-0.054, +0.020], editability -0.003 [-0.014, +0.008]); style words stop short of what 5,000 steps give
them. The previous 300-step cap was -0.065* (3 concepts). docs/quality.md keeps plain TI at 300 steps as its
base, fixed so that its variants differ in one thing each."""

WORLD_DEFAULTS = {
    "learn": {"steps": 1250, "batch_size": 4, "lr": 5e-3, "val_every": 25, "min_steps": 150},
    "generate": {"steps": 25, "guidance": 5.0},
}
