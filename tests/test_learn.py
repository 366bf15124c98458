"""The core engine: the paper's method on a tiny random SD pipeline."""

import json

import pytest
import torch
from safetensors import safe_open

from oneword.errors import OnewordError
from oneword.invert import LearnConfig, diffusion_loss, encode_templates, learn, learned_word
from oneword.templates import OBJECT_TEMPLATES, STYLE_TEMPLATES


def quick(**kw):
    base = dict(
        token="<teal-ring>", init="ring", steps=6, batch_size=2, lr=5e-2, save_every=3, early_stop=False, seed=0
    )
    base.update(kw)
    return LearnConfig(**base)


def frozen_state(model):
    return {
        f"{name}.{k}": v.detach().clone()
        for name, m in (("unet", model.unet), ("vae", model.vae), ("text", model.text_encoder))
        for k, v in m.state_dict().items()
    }


def test_only_the_new_vector_changes_and_frozen_weights_are_bit_identical(tiny_model, photos, tmp_path):
    before = frozen_state(tiny_model)
    vocab = len(tiny_model.tokenizer)
    concept = learn(tiny_model, photos, quick(), tmp_path / "run", progress=False)
    after = frozen_state(tiny_model)
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    assert len(tiny_model.tokenizer) == vocab  # the model's own tokenizer is untouched too
    ring = tiny_model.text_encoder.get_input_embeddings().weight[
        tiny_model.tokenizer("ring", add_special_tokens=False).input_ids[0]
    ]
    assert concept.vectors.shape == (1, tiny_model.hidden_size)
    assert not torch.allclose(concept.vectors[0], ring)  # it learned something
    for p in tiny_model.unet.parameters():
        assert p.grad is None


def test_loss_falls_on_a_fixed_problem(tiny_model, photos, tmp_path):
    cfg = quick(steps=60, lr=0.1, early_stop=True, val_every=10, min_steps=10_000, init="dog")
    learn(tiny_model, photos, cfg, tmp_path / "run", progress=False)
    val = json.loads((tmp_path / "run" / "run.json").read_text())["early_stopping"]["val_losses"]
    assert len(val) == 6
    assert val[-1] < val[0]


def test_same_seed_gives_bit_identical_vectors_on_cpu(tiny_model, photos, tmp_path):
    a = learn(tiny_model, photos, quick(), tmp_path / "a", progress=False)
    b = learn(tiny_model, photos, quick(), tmp_path / "b", progress=False)
    c = learn(tiny_model, photos, quick(seed=1), tmp_path / "c", progress=False)
    assert torch.equal(a.vectors, b.vectors)
    assert not torch.equal(a.vectors, c.vectors)


def test_resume_equals_uninterrupted(tiny_model, photos, tmp_path):
    def run_to(steps, folder, resume=False):  # validation every 2 steps, never stopping early
        cfg = quick(steps=steps, early_stop=True, val_every=2, min_steps=100)
        return learn(tiny_model, photos, cfg, tmp_path / folder, resume=resume, progress=False)

    whole = run_to(9, "whole")
    run_to(3, "part")
    resumed = run_to(9, "part", resume=True)
    assert torch.equal(whole.vectors, resumed.vectors)
    run = json.loads((tmp_path / "part" / "run.json").read_text())
    assert run["step"] == 9 and run["status"] == "done"
    # the early-stopping history came back with the checkpoint: the validations before the break are kept
    whole_run = json.loads((tmp_path / "whole" / "run.json").read_text())
    assert run["early_stopping"]["val_losses"] == whole_run["early_stopping"]["val_losses"]
    assert len(run["early_stopping"]["val_losses"]) == 4


def test_resume_where_early_stopping_decides_stops_at_the_same_step_with_the_same_history(tiny_model, photos, tmp_path):
    """Early stopping decides from the validation losses of the whole run, so a resumed run must carry the
    losses seen before the break: it stops at the uninterrupted run's step, with its history and vector."""
    # a rule that stops once it has 4 losses from step 10 on: after step 10 (validations at 2, 4, ..., 10)
    cfg = dict(steps=40, early_stop=True, val_every=2, val_window=4, val_z=1e6, min_steps=10)
    whole = learn(tiny_model, photos, quick(**cfg), tmp_path / "whole", progress=False)
    learn(tiny_model, photos, quick(**{**cfg, "steps": 6}), tmp_path / "part", progress=False)  # 3 losses, then break
    resumed = learn(tiny_model, photos, quick(**cfg), tmp_path / "part", resume=True, progress=False)
    whole_run, run = (json.loads((tmp_path / d / "run.json").read_text()) for d in ("whole", "part"))
    assert (whole_run["status"], whole_run["step"]) == ("early_stopped", 10)
    assert (run["status"], run["step"]) == ("early_stopped", 10)
    assert run["early_stopping"]["val_losses"] == whole_run["early_stopping"]["val_losses"]
    assert len(run["early_stopping"]["val_losses"]) == 5
    assert torch.equal(resumed.vectors, whole.vectors)


def test_resumed_state_owns_its_memory(tiny_model, photos, tmp_path):
    """The checkpoint is memory-mapped when read: the resumed vectors, AdamW moments and generator are copies, so
    a rewrite of the file in place cannot reach into a running run."""
    from oneword.early_stopping import EarlyStopping
    from oneword.run import Run

    cfg = quick(steps=3)
    learn(tiny_model, photos, cfg, tmp_path / "run", progress=False)
    vectors = torch.nn.Parameter(torch.zeros(1, tiny_model.hidden_size))
    opt = torch.optim.AdamW([vectors])
    run = Run(tmp_path / "run", cfg, tiny_model, photos, vectors, opt, EarlyStopping(cfg))
    run.resume()
    before = [vectors.detach().clone(), run.rng.get_state()] + [t.clone() for t in opt.state[vectors].values()]
    assert run.step == 3 and float(before[2].abs().sum()) > 0  # AdamW moments were restored
    with open(run.checkpoint, "r+b") as f:  # every tensor byte of the file set to 0xff, in place
        header = 8 + int.from_bytes(f.read(8), "little")
        size = f.seek(0, 2)
        f.seek(header)
        f.write(b"\xff" * (size - header))
    after = [vectors.detach(), run.rng.get_state()] + list(opt.state[vectors].values())
    assert all(torch.equal(a, b) for a, b in zip(after, before))


def test_resume_onto_another_model_is_refused(tiny_model, photos, tmp_path):
    """A vector only means something in the text encoder it was learned in: resuming a run on other weights
    (here: the same pipeline under another fingerprint) is a clear error, and the run's files stay as they were."""
    import dataclasses

    learn(tiny_model, photos, quick(steps=3), tmp_path / "run", progress=False)
    before = {f.name: f.read_bytes() for f in (tmp_path / "run").iterdir() if f.is_file()}
    other = dataclasses.replace(tiny_model, identity={**tiny_model.identity, "fingerprint": "0123456789abcdef"})
    with pytest.raises(OnewordError, match="learned on model"):
        learn(other, photos, quick(steps=6), tmp_path / "run", resume=True, progress=False)
    after = {f.name: f.read_bytes() for f in (tmp_path / "run").iterdir() if f.is_file()}
    assert after == before


def test_saved_file_loads_in_diffusers_and_prompt_embedding_matches(tiny_dir, tiny_model, photos, tmp_path):
    from diffusers import StableDiffusionPipeline

    concept = learn(tiny_model, photos, quick(vectors=2), tmp_path / "run", progress=False)
    pipe = StableDiffusionPipeline.from_pretrained(tiny_dir, safety_checker=None, requires_safety_checker=False)
    pipe.load_textual_inversion(str(tmp_path / "run" / "learned_embeds.safetensors"))
    ids = pipe.tokenizer.convert_tokens_to_ids(["<teal-ring>", "<teal-ring>_1"])
    table = pipe.text_encoder.get_input_embeddings().weight
    assert torch.equal(table[ids], concept.vectors)
    # the prompt embedding diffusers computes equals the one oneword learned with
    prompt = "a photo of <teal-ring>"
    theirs, _ = pipe.encode_prompt(prompt, "cpu", 1, False)
    with learned_word(tiny_model, concept.token, concept.vectors) as tok:
        ids = tok(
            "a photo of <teal-ring> <teal-ring>_1",
            padding="max_length",
            max_length=tok.model_max_length,
            return_tensors="pt",
        ).input_ids
        ours = tiny_model.text_encoder(ids)[0]
    assert torch.allclose(theirs, ours, atol=1e-6)


def test_v_prediction_uses_velocity_target(tiny_v_dir, photos, tmp_path):
    from oneword.invert import _training_schedule
    from oneword.models import load_model

    model = load_model(str(tiny_v_dir), device="cpu")
    sched = _training_schedule(model)
    assert sched.config.prediction_type == "v_prediction"
    torch.manual_seed(0)
    latents, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    t = torch.tensor([10, 900])
    ids = model.tokenizer(["a", "b"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        got = diffusion_loss(model, sched, latents, noise, t, ids)
        pred = model.unet(sched.add_noise(latents, noise, t), t, model.text_encoder(ids)[0]).sample
    assert torch.allclose(got, torch.nn.functional.mse_loss(pred, sched.get_velocity(latents, noise, t)))
    assert not torch.allclose(got, torch.nn.functional.mse_loss(pred, noise))
    learn(model, photos, quick(steps=2), tmp_path / "run", progress=False)


def test_style_property_uses_style_templates(tiny_model):
    def ids(tok, templates):
        return tok(
            [t.format("<s>") for t in templates],
            padding="max_length",
            max_length=tok.model_max_length,
            return_tensors="pt",
        ).input_ids

    with learned_word(tiny_model, "<s>", torch.zeros(1, tiny_model.hidden_size)) as tok:
        style, obj = encode_templates(tok, "style", "<s>", 1), encode_templates(tok, "object", "<s>", 1)
        assert torch.equal(style, ids(tok, STYLE_TEMPLATES))
        assert torch.equal(obj, ids(tok, OBJECT_TEMPLATES))
    with pytest.raises(OnewordError, match="--property"):
        encode_templates(tok, "colour", "<s>", 1)


def test_token_already_in_vocabulary_is_refused(tiny_model, photos, tmp_path):
    with pytest.raises(OnewordError, match="already a word"):
        learn(tiny_model, photos, quick(token="cat"), tmp_path / "run", progress=False)


def test_unknown_init_word_is_refused(tiny_model, photos, tmp_path):
    with pytest.raises(OnewordError, match="not a word this model knows"):
        learn(tiny_model, photos, quick(init="qzxqvjkw"), tmp_path / "run", progress=False)


def test_nonfinite_steps_never_reach_the_vector(tiny_model, photos, tmp_path, monkeypatch):
    import oneword.invert as inv

    real = inv.diffusion_loss
    calls = {"n": 0}

    def sometimes_nan(*a, **k):
        calls["n"] += 1
        loss = real(*a, **k)
        return loss * float("nan") if calls["n"] % 3 == 0 else loss

    monkeypatch.setattr(inv, "diffusion_loss", sometimes_nan)
    concept = learn(tiny_model, photos, quick(steps=6), tmp_path / "run", progress=False)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["skipped_nonfinite_steps"] >= 2 and run["step"] == 6
    assert torch.isfinite(concept.vectors).all()


class Steps:
    """learn's loss, watched (and spoiled at chosen steps) from inside: for each training step, in order, the vector
    it starts from, its timesteps (the batch drawn) and the learning rate it runs at."""

    def __init__(self, model, monkeypatch, spoil=None, at=()):
        import oneword.invert as inv

        self.vectors, self.timesteps, self.lrs = [], [], []
        real_loss, real_set_lr = inv.diffusion_loss, inv._set_lr

        def loss(*a, **k):
            self.vectors.append(model.text_encoder.get_input_embeddings().vectors.detach().clone())
            self.timesteps.append(a[4].clone())
            value = real_loss(*a, **k)
            return spoil(value) if len(self.vectors) in at else value

        def set_lr(opt, cfg, run):
            real_set_lr(opt, cfg, run)
            self.lrs.append(opt.param_groups[0]["lr"])

        monkeypatch.setattr(inv, "diffusion_loss", loss)
        monkeypatch.setattr(inv, "_set_lr", set_lr)


class InfiniteGradient(torch.autograd.Function):
    """The loss unchanged (finite), its gradient infinite: what an fp16 overflow in the backward pass gives."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


def test_a_finite_loss_with_an_infinite_gradient_is_skipped_by_the_loop(tiny_model, photos, tmp_path, monkeypatch):
    """The loop hands the gradient to the guard, not only the loss: a step whose loss is finite but whose gradient
    is not (fp16 overflow) leaves the vector as it was and is counted; the other steps move it."""
    steps = Steps(tiny_model, monkeypatch, spoil=InfiniteGradient.apply, at={2, 3, 5})
    concept = learn(tiny_model, photos, quick(steps=6), tmp_path / "run", progress=False)
    after = [*steps.vectors[1:], concept.vectors]  # the vector after each step
    assert len(steps.vectors) == 6
    for i, (before, now) in enumerate(zip(steps.vectors, after), start=1):
        assert torch.equal(before, now) == (i in {2, 3, 5}), i
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["skipped_nonfinite_steps"] == 3 and run["step"] == 6 and run["rollbacks"] == 0


def test_a_run_of_bad_steps_rolls_back_to_the_checkpoint_at_half_the_lr_which_a_resume_keeps(
    tiny_model, photos, tmp_path, monkeypatch
):
    """Two bad steps in a row (max_bad_steps=2) after the checkpoint of step 3: back to that checkpoint (its vector,
    its batch generator: the steps after it are drawn again) at half the learning rate, and on to the end. The
    halved rate is part of the run: a resumed run keeps it."""
    nan = lambda loss: loss * float("nan")  # noqa: E731
    steps = Steps(tiny_model, monkeypatch, spoil=nan, at={5, 6})
    cfg = quick(steps=9, save_every=3, max_bad_steps=2)
    learn(tiny_model, photos, cfg, tmp_path / "run", progress=False)
    # steps 1-6 (5 and 6 bad: the check point after step 6 rolls back to step 3), then steps 4-9 again
    assert len(steps.vectors) == 12
    assert torch.equal(steps.vectors[6], steps.vectors[3])  # the checkpoint's vector (after step 3), not step 4's
    assert not torch.equal(steps.vectors[6], steps.vectors[4])
    assert all(torch.equal(a, b) for a, b in zip(steps.timesteps[6:9], steps.timesteps[3:6]))  # the same batches
    assert steps.lrs == [cfg.lr] * 6 + [cfg.lr / 2] * 6
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert (run["step"], run["rollbacks"], run["skipped_nonfinite_steps"]) == (9, 1, 2)
    with safe_open(tmp_path / "run" / "checkpoint.safetensors", "pt") as f:
        state = json.loads(f.metadata()["state"])
    assert (state["lr_scale"], state["rollbacks"], state["skipped"]) == (0.5, 1, 2)

    del steps.lrs[:]
    cfg.steps = 11
    learn(tiny_model, photos, cfg, tmp_path / "run", resume=True, progress=False)
    assert steps.lrs == [cfg.lr / 2] * 2
    assert json.loads((tmp_path / "run" / "run.json").read_text())["rollbacks"] == 1


def test_a_run_of_bad_steps_that_spans_a_resume_rolls_back_as_without_the_break(
    tiny_model, photos, tmp_path, monkeypatch
):
    """Bad steps 3 and 4 (max_bad_steps=2) roll back at the check point after step 6, also when the run stopped
    after step 3 and was resumed: the run of bad steps going on is part of the checkpoint."""
    nan = lambda loss: loss * float("nan")  # noqa: E731
    cfg = quick(steps=9, save_every=3, max_bad_steps=2)
    Steps(tiny_model, monkeypatch, spoil=nan, at={3, 4})
    whole = learn(tiny_model, photos, cfg, tmp_path / "whole", progress=False)
    monkeypatch.undo()
    Steps(tiny_model, monkeypatch, spoil=nan, at={3})
    learn(tiny_model, photos, quick(steps=3, save_every=3, max_bad_steps=2), tmp_path / "part", progress=False)
    monkeypatch.undo()
    Steps(tiny_model, monkeypatch, spoil=nan, at={1})  # the resumed run's first step is step 4
    resumed = learn(tiny_model, photos, cfg, tmp_path / "part", resume=True, progress=False)
    whole_run, run = (json.loads((tmp_path / d / "run.json").read_text()) for d in ("whole", "part"))
    assert (whole_run["rollbacks"], whole_run["skipped_nonfinite_steps"]) == (1, 2)
    assert (run["rollbacks"], run["skipped_nonfinite_steps"]) == (1, 2)
    assert torch.equal(resumed.vectors, whole.vectors)


def test_bad_steps_that_go_on_roll_back_three_times_halving_the_lr_then_stop(tiny_model, photos, tmp_path, monkeypatch):
    """Bad steps from the start: after every 2 (max_bad_steps) a roll-back at half the learning rate; the fourth
    time, the run gives up and says how many steps and roll-backs it took and at which rate."""
    steps = Steps(tiny_model, monkeypatch, spoil=lambda loss: loss * float("nan"), at=range(1, 1000))
    cfg = quick(steps=6, max_bad_steps=2, save_every=2)
    with pytest.raises(
        OnewordError,
        match=r"diverged: 8 non-finite steps and 3 roll-backs; try a lower --lr "
        r"\(now 0.00625\)",
    ):  # 0.05 halved three times
        learn(tiny_model, photos, cfg, tmp_path / "run", progress=False)
    # every bad step is undone, and with no checkpoint yet each roll-back starts again from step 0 at half the lr
    assert all(torch.equal(v, steps.vectors[0]) for v in steps.vectors)
    assert steps.lrs == [0.05] * 2 + [0.025] * 2 + [0.0125] * 2 + [0.00625] * 2


def test_init_text_spreads_over_vectors(tiny_model):
    """One vector starts from the mean of the init text; n vectors from several words take one word each
    (A1111's rule), and a single init word is repeated."""
    from oneword.invert import init_vectors

    table = tiny_model.text_encoder.get_input_embeddings().weight.detach()
    red, ring = (table[tiny_model.tokenizer(w, add_special_tokens=False).input_ids[0]] for w in ("red", "ring"))
    assert torch.allclose(init_vectors(tiny_model, "red ring", 1)[0], (red + ring) / 2)
    two = init_vectors(tiny_model, "red ring", 2)
    assert torch.equal(two[0], red) and torch.equal(two[1], ring)
    four = init_vectors(tiny_model, "red ring", 4)
    assert [torch.equal(v, w) for v, w in zip(four, (red, red, ring, ring))] == [True] * 4
    assert torch.equal(init_vectors(tiny_model, "ring", 3), ring.repeat(3, 1))


def test_stopping_rule_waits_for_a_falling_loss_and_stops_a_flat_one():
    from oneword.early_stopping import loss_stopped_falling

    g = torch.Generator().manual_seed(0)
    jitter = (torch.randn(40, generator=g) * 1e-4).tolist()
    falling = [0.28 - 2e-4 * i + j for i, j in enumerate(jitter)]  # a style word's steady fall, with jitter
    flat = [0.25 + j for j in jitter]  # an object word: flat from the first value
    levelled = falling[:20] + [falling[19] + j for j in jitter[20:]]
    assert not any(loss_stopped_falling(falling[:k], 8, 2.0) for k in range(1, 41))
    assert loss_stopped_falling(flat[:8], 8, 2.0) and not loss_stopped_falling(flat[:7], 8, 2.0)
    assert loss_stopped_falling(levelled, 8, 2.0) and not loss_stopped_falling(levelled[:22], 8, 2.0)


def test_early_stopping_ends_a_converged_run_and_says_so(tiny_model, photos, tmp_path):
    cfg = quick(steps=100, lr=0.0, early_stop=True, val_every=2, val_window=4, min_steps=10)  # lr 0: nothing moves
    learn(tiny_model, photos, cfg, tmp_path / "run", progress=False)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["status"] == "early_stopped" and run["step"] == 10
    assert run["early_stopping"]["stopped_early"] and len(run["early_stopping"]["val_losses"]) == 5
    assert len(set(run["early_stopping"]["val_losses"])) == 1


def test_validation_batch_covers_every_photo_and_its_loss_ignores_chunking(tiny_model, photos, tmp_path):
    from oneword.data import encode_photos, read_photos
    from oneword.early_stopping import ValidationBatch
    from oneword.invert import _training_schedule

    cache = encode_photos(tiny_model, read_photos(photos), tiny_model.resolution)
    ids = tiny_model.tokenizer(
        ["a photo of a ring", "a rendering of a ring"],
        padding="max_length",
        max_length=tiny_model.tokenizer.model_max_length,
        return_tensors="pt",
    ).input_ids
    schedule = _training_schedule(tiny_model)
    steps = schedule.config.num_train_timesteps

    def sample_loss(rows, posterior_noise, noise, timesteps, prompt_ids):
        return diffusion_loss(tiny_model, schedule, cache.sample(rows, posterior_noise), noise, timesteps, prompt_ids)

    one, whole = (ValidationBatch(cache, ids, quick(), steps, sample_loss, chunk=c) for c in (1, 16))
    assert sorted(set(one.rows.tolist())) == list(range(len(cache))) and len(one.rows) == 16
    assert len(set(one.timesteps.tolist())) == 16 and one.timesteps.min() >= 0.05 * steps - 1
    assert {tuple(r) for r in one.ids.tolist()} == {tuple(r) for r in ids.tolist()}  # both templates are used
    assert one.loss() == pytest.approx(whole.loss(), rel=1e-5)
    # val_t_min: the same 16 samples over the noisier part of the schedule only; the default is the old spread
    upper = ValidationBatch(cache, ids, quick(val_t_min=0.5), steps, sample_loss)
    assert upper.timesteps.min() >= 0.5 * steps and upper.timesteps.max() < 0.95 * steps
    assert len(set(upper.timesteps.tolist())) == 16 and torch.equal(upper.noise, one.noise)
    old_spread = (steps * (0.05 + 0.9 * (torch.arange(16) + 0.5) / 16)).long()
    assert sorted(one.timesteps.tolist()) == sorted(old_spread.tolist())
    for bad in (0.95, -0.1, float("nan")):
        with pytest.raises(OnewordError, match="--val-t-min"):
            learn(tiny_model, photos, quick(val_t_min=bad), tmp_path / "run", progress=False)


@pytest.mark.parametrize(
    "setting, other", [("token", "<other>"), ("vectors", 2), ("property", "style"), ("batch_size", 1), ("seed", 1)]
)
def test_resume_with_settings_the_checkpoint_depends_on_changed_is_refused(
    tiny_model, photos, tmp_path, setting, other
):
    """The checkpoint's vectors, AdamW moments and generator only continue the run that made them: resuming with
    another token, vector count, property, batch size or seed is a one-line error naming the setting, and the run's
    files stay as they were."""
    learn(tiny_model, photos, quick(steps=3), tmp_path / "run", progress=False)
    before = {f.name: f.read_bytes() for f in (tmp_path / "run").iterdir() if f.is_file()}
    with pytest.raises(OnewordError, match=f"cannot resume: this run used {setting}="):
        learn(tiny_model, photos, quick(steps=6, **{setting: other}), tmp_path / "run", resume=True, progress=False)
    after = {f.name: f.read_bytes() for f in (tmp_path / "run").iterdir() if f.is_file()}
    assert after == before
