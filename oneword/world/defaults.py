"""Recommended settings for the embedded world model (32 px, 8x8x8 latents), chosen on its tuning concepts
(never concepts.HELD_OUT). Evidence on the current model (v5, run 6): docs/benchmarks.md (time to quality).
The paper's batch and learning rate, at most 1,250 steps (5,000 image-steps, 1/4 of the paper's 20,000) with early
stopping (oneword.invert.Validator, a 16-validation window): over the 10 tuning concepts and 4 learning seeds it
stops after 400-850 steps (10.8-12.6% of the paper's image-steps) and is within 0.035 of the paper setting's final
word in reconstruction (pooled -0.013 [-0.031, +0.003]) and within 0.015 in editability (-0.003 [-0.014, +0.005]),
less than the paper setting's own seed-to-seed spread. On the 3 held-out concepts (a final report, 2 seeds) it is
not shown equivalent: -0.060 [-0.119, +0.009], teal_crescent short with both seeds (the rule can stop a word whose
reconstruction is still rising). The previous 300-step cap was -0.065* (3 concepts).
docs/quality.md keeps plain TI at 300 steps as its base, fixed so that its variants differ in one thing each."""

WORLD_DEFAULTS = {
    "learn": {"steps": 1250, "batch_size": 4, "lr": 5e-3, "val_every": 25, "min_steps": 150},
    "generate": {"steps": 25, "guidance": 5.0},
}
