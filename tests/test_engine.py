"""Speed never changes the method: oneword's optimised engine against a plain, diffusers-style reference.

The engine (oneword.invert) differs from the common scripts in how it computes, not what: VAE posteriors
cached once (oneword.data), only the new vector trainable through LearnedTokenEmbedding, AdamW over that
vector alone. The reference here does it the plain way: `resize_token_embeddings` on a copy of the text
encoder, the new row set to the vector, the VAE run on the pixels, AdamW over the whole embedding matrix
with every other row restored. Same images, posterior noise, diffusion noise, timesteps and prompts.
"""

import copy

import pytest
import torch
import torch.nn.functional as F

import oneword.invert as inv
from oneword.data import encode_photos, read_photos, to_tensor
from oneword.invert import LearnConfig, _training_schedule, draw_batch, learn
from oneword.templates import OBJECT_TEMPLATES

TOKEN = "<teal-ring>"


@pytest.fixture
def images(photos):
    """The conftest photos as PIL images (the engine's math is under test here, not image loading)."""
    from PIL import Image

    return [Image.open(p).convert("RGB") for p in sorted(photos.glob("*.png"))]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def placeholder_names(n):
    return [TOKEN] + [f"{TOKEN}_{i}" for i in range(1, n)]


def prompt_text(template: int, n: int) -> str:
    return OBJECT_TEMPLATES[template].format(" ".join(placeholder_names(n)))


def reference_pixels(model, images):
    """Rows [0, N): the images, [N, 2N): their mirror images, as the engine lays out its cache."""
    px = to_tensor(images, model.resolution)
    return torch.cat([px, px.flip(-1)])


class Reference:
    """A plain textual-inversion step as diffusers' example writes it (fp32, whole embedding matrix)."""

    def __init__(self, model, vectors: torch.Tensor):
        n = len(vectors)
        self.model = model
        self.tokenizer = copy.deepcopy(model.tokenizer)
        assert self.tokenizer.add_tokens(placeholder_names(n)) == n
        self.new_ids = self.tokenizer.convert_tokens_to_ids(placeholder_names(n))
        self.text_encoder = copy.deepcopy(model.text_encoder).float()
        self.text_encoder.resize_token_embeddings(len(self.tokenizer))
        self.weight = self.text_encoder.get_input_embeddings().weight
        with torch.no_grad():
            self.weight[self.new_ids] = vectors.float()
        self.weight.requires_grad_(True)
        self.schedule = _training_schedule(model)

    def latents(self, pixels, rows, posterior_noise):
        dist = self.model.vae.float().encode(pixels[rows]).latent_dist
        return (dist.mean + dist.std * posterior_noise) * self.model.vae.config.scaling_factor

    def loss(self, pixels, rows, posterior_noise, noise, timesteps, templates) -> torch.Tensor:
        latents = self.latents(pixels, rows, posterior_noise)
        ids = self.tokenizer(
            [prompt_text(int(t), len(self.new_ids)) for t in templates],
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        noisy = self.schedule.add_noise(latents, noise, timesteps)
        if self.schedule.config.prediction_type == "epsilon":
            target = noise
        else:
            target = self.schedule.get_velocity(latents, noise, timesteps)
        cond = self.text_encoder(ids)[0]
        pred = self.model.unet.float()(noisy, timesteps, cond).sample
        return F.mse_loss(pred.float(), target.float())

    def grad(self):
        return self.weight.grad[self.new_ids]


def engine_step(model, images, vectors, b):
    """oneword's loss and gradient w.r.t. the new vectors for the draw `b`."""
    cache = encode_photos(model, read_photos(images), model.resolution)
    v = torch.nn.Parameter(vectors.clone())
    with inv.learned_word(model, TOKEN, v) as tok:
        ids = inv.encode_templates(tok, "object", TOKEN, len(v))
        latents = cache.sample(b.rows, b.posterior_noise)
        loss = inv.diffusion_loss(model, inv._training_schedule(model), latents, b.noise, b.timesteps, ids[b.templates])
        loss.backward()
    return loss.detach(), v.grad.detach().clone()


_REFERENCE_CACHE = {}


def reference_step(ref_model, images, vectors, b, key=None):
    """The reference's (loss, grad); memoised by `key` (the engine side is never memoised)."""
    if key is not None and key in _REFERENCE_CACHE:
        return _REFERENCE_CACHE[key]
    out = _reference_step(ref_model, images, vectors, b)
    if key is not None:
        _REFERENCE_CACHE[key] = out
    return out


def _reference_step(ref_model, images, vectors, b):
    ref = Reference(ref_model, vectors)
    loss = ref.loss(reference_pixels(ref_model, images), b.rows, b.posterior_noise, b.noise, b.timesteps, b.templates)
    loss.backward()
    return loss.detach(), ref.grad().clone()


def a_draw(model, images, batch=4, seed=0):
    n_rows = 2 * len(images)
    shape = (4, model.resolution // model.pipe.vae_scale_factor, model.resolution // model.pipe.vae_scale_factor)
    return draw_batch(torch.Generator().manual_seed(seed), n_rows, len(OBJECT_TEMPLATES), shape, 1000, batch)


def start_vectors(model, n, seed=0):
    g = torch.Generator().manual_seed(seed + 100)
    return torch.randn(n, model.hidden_size, generator=g) * 0.02


def compare(model, ref_model, images, n=1, seed=0):
    vectors = start_vectors(ref_model, n, seed)
    b = a_draw(ref_model, images, seed=seed)
    loss_e, grad_e = engine_step(model, images, vectors, b)
    key = (ref_model.identity["fingerprint"], str(ref_model.dtype), n, seed, len(images))
    loss_r, grad_r = reference_step(ref_model, images, vectors, b, key)
    assert float(grad_r.norm()) > 0 and torch.isfinite(grad_r).all()  # a real, non-vacuous gradient
    return rel_err(loss_e, loss_r), rel_err(grad_e, grad_r), grad_e, grad_r


# ------------------------------------------------------------------------------------------ the tests


def test_cached_posterior_sample_equals_vae_latent_dist_sample_with_the_same_noise(tiny_model, images):
    cache = encode_photos(tiny_model, images, tiny_model.resolution)
    pixels = reference_pixels(tiny_model, images)
    assert len(cache) == len(pixels) == 2 * len(images)
    rows = torch.tensor([0, 3, 5, 6, 1])  # images and mirrors, out of order, one repeated below
    rows = torch.cat([rows, rows[:1]])
    shape = (len(rows), *cache.mean.shape[1:])
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(7))
    ours = cache.sample(rows, noise)
    with torch.no_grad():
        dist = tiny_model.vae.encode(pixels[rows]).latent_dist
        theirs = dist.sample(generator=torch.Generator().manual_seed(7)) * tiny_model.vae.config.scaling_factor
    assert float(dist.std.min()) > 0  # the posterior really is random: the noise term matters
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    # a different draw is a different latent (the comparison can fail)
    assert not torch.allclose(cache.sample(rows, torch.randn(shape)), theirs, atol=1e-3)


@pytest.mark.parametrize("n_vectors", [1, 2])
def test_engine_loss_and_gradient_equal_a_plain_reference_step(tiny_model, images, n_vectors):
    loss_err, grad_err, grad_e, grad_r = compare(tiny_model, tiny_model, images, n=n_vectors)
    assert grad_e.shape == grad_r.shape == (n_vectors, tiny_model.hidden_size)
    assert loss_err < 1e-5, loss_err  # measured: 0.0 (the same operations in the same order)
    assert grad_err < 1e-4, grad_err


def test_engine_equals_reference_for_v_prediction(tiny_v_dir, images):
    from oneword.models import load_model

    model = load_model(str(tiny_v_dir), device="cpu")
    loss_err, grad_err, _, _ = compare(model, model, images, n=1, seed=3)
    assert loss_err < 1e-5 and grad_err < 1e-4, (loss_err, grad_err)


def test_bf16_engine_is_within_bf16_tolerance_of_the_fp32_reference(tiny_dir, tiny_model, images):
    from oneword.models import load_model

    bf16 = load_model(str(tiny_dir), device="cpu", dtype=torch.bfloat16)
    loss_err, grad_err, grad_e, grad_r = compare(bf16, tiny_model, images, n=1)
    cos = F.cosine_similarity(grad_e.flatten().double(), grad_r.flatten().double(), dim=0)
    # measured: loss 1e-4..7e-4 relative, gradient 1.2..1.8 % relative, cosine > 0.9999 (seeds 0-3)
    assert loss_err < 5e-3, loss_err
    assert grad_err < 0.05 and cos > 0.999, (grad_err, float(cos))


def test_model_dtype_and_device_are_diffusers_own(tiny_dir, tiny_model):
    """FrozenModel reads them from the UNet's first weight (diffusers' properties walk every submodule on every
    step): the same answer as diffusers', for each weight dtype."""
    from oneword.models import load_model

    for model in (tiny_model, load_model(str(tiny_dir), device="cpu", dtype=torch.bfloat16)):
        assert (model.dtype, model.device) == (model.unet.dtype, model.unet.device)
    assert tiny_model.dtype == torch.float32


def test_a_broken_engine_is_caught(tiny_model, images, monkeypatch):
    """The comparison is not vacuous: small, plausible bugs in the engine make it fail."""
    import oneword.data
    import oneword.invert

    # 1. the cache forgets the posterior noise (uses the mean only)
    with monkeypatch.context() as m:
        m.setattr(oneword.data.LatentCache, "sample", lambda self, index, noise: self.mean[index] * self.scaling_factor)
        loss_err, grad_err, _, _ = compare(tiny_model, tiny_model, images)
        assert loss_err > 1e-3 or grad_err > 1e-2
    # 2. the learned embedding reads the wrong row of the small table
    real = oneword.invert.LearnedTokenEmbedding.forward

    def swapped(self, ids):
        return (
            real(self, ids)
            if len(self.vectors) < 2
            else real(type(self)(self.base, self.first_id, self.vectors.flip(0)), ids)
        )

    with monkeypatch.context() as m:
        m.setattr(oneword.invert.LearnedTokenEmbedding, "forward", swapped)
        _, grad_err, _, _ = compare(tiny_model, tiny_model, images, n=2)
        assert grad_err > 1e-2
    # 3. the noisy latents get the wrong timestep
    real_loss = oneword.invert.diffusion_loss
    with monkeypatch.context() as m:
        m.setattr(
            oneword.invert,
            "diffusion_loss",
            lambda mdl, s, lat, nz, t, ids, *rest, **kw: real_loss(
                mdl, s, lat, nz, (t + 50).clamp(max=999), ids, *rest, **kw
            ),
        )
        loss_err, grad_err, _, _ = compare(tiny_model, tiny_model, images)
        assert loss_err > 1e-3 or grad_err > 1e-2


def test_learn_follows_the_whole_matrix_adamw_reference_loop(tiny_model, images, tmp_path):
    """`learn` itself, 4 steps, against the diffusers-style loop: AdamW over the whole resized embedding
    matrix with every other row restored after each step, the same draws (`draw_batch` on the seed)."""
    cfg = LearnConfig(
        token=TOKEN,
        init="ring",
        steps=4,
        batch_size=3,
        lr=5e-3,
        weight_decay=0.01,
        early_stop=False,
        save_every=1000,
        seed=5,
    )
    concept = learn(tiny_model, images, cfg, tmp_path / "run", progress=False)

    init_id = tiny_model.tokenizer("ring", add_special_tokens=False).input_ids
    assert len(init_id) == 1
    init = tiny_model.text_encoder.get_input_embeddings().weight[init_id].detach().clone()
    ref = Reference(tiny_model, init)
    original = ref.weight.detach().clone()
    opt = torch.optim.AdamW([ref.weight], lr=cfg.lr, weight_decay=cfg.weight_decay)
    pixels = reference_pixels(tiny_model, images)
    g = torch.Generator().manual_seed(cfg.seed)
    lat = tiny_model.resolution // tiny_model.pipe.vae_scale_factor
    keep = torch.ones(len(ref.weight), dtype=torch.bool)
    keep[ref.new_ids] = False
    for _ in range(cfg.steps):
        b = draw_batch(g, len(pixels), len(OBJECT_TEMPLATES), (4, lat, lat), 1000, cfg.batch_size)
        loss = ref.loss(pixels, b.rows, b.posterior_noise, b.noise, b.timesteps, b.templates)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            ref.weight[keep] = original[keep]
    learned = ref.weight[ref.new_ids].detach()
    moved = float((learned - init).abs().max())
    assert moved > 2 * cfg.lr  # it moved several steps' worth, so the match below is not trivial
    torch.testing.assert_close(concept.vectors, learned, rtol=0, atol=1e-5)
    assert torch.equal(ref.weight[keep], original[keep])


def test_sd15_architecture_has_the_real_parameter_counts():
    """The random-weight SD1.5 the speed benchmark times is SD1.5's architecture, checked on the meta device."""
    from oneword.tiny_models import SD15_PARAMS, count_params, sd15_modules

    unet, vae, text, tokenizer, scheduler = sd15_modules("meta")
    assert count_params(unet) == SD15_PARAMS["unet"]
    assert count_params(vae) == SD15_PARAMS["vae"]
    assert count_params(text) == SD15_PARAMS["text_encoder"]
    assert len(tokenizer) == 49408 and unet.config.sample_size * 8 == 512


def test_speed_benchmark_runs_on_the_tiny_model(tmp_path, capsys):
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks import speed

    out = tmp_path / "speed.json"
    assert (
        speed.main(
            ["--model", "tiny", "--batch", "2", "--steps", "2", "--warmup", "1", "--device", "cpu", "--json", str(out)]
        )
        == 0
    )
    results = json.loads(out.read_text())["results"]
    assert {r["system"] for r in results} == {"oneword", "reference"}
    assert all(r["image_steps_per_s"] > 0 and r["peak"] > 0 for r in results)
    assert "ratio" in capsys.readouterr().out


def _profile_table(title: str, rows: list[tuple[str, str]], total: str, column: str = "Self CUDA") -> str:
    """A block as torch.profiler's table prints it (columns at least two spaces apart), as speed.py --profile writes."""
    head = ["Name", "Self CPU %", "Self CPU", column, "# of Calls"]
    lines = [f"## {title}", "-" * 40, "  ".join(f"{h:>14}" for h in head), "-" * 40]
    lines += ["  ".join([f"{name:>60}", "1.00%", "1.000ms", ms, "3"]) for name, ms in rows]
    return "\n".join(
        lines + ["-" * 40, "Self CPU time total: 9.000ms", f"Self {column.split()[1]} time total: {total}", ""]
    )


def test_profile_bound_splits_device_time_by_kind_of_work():
    """benchmarks/profile_bound.py on a small profile written here: each kind's sum, 'other' as the rest of the
    total, cuDNN's layout transposes counted apart, repeated (truncated) names added up, and the bound arithmetic."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks import profile_bound

    elementwise = "void at::native::elementwise_kernel<128, 4, at::native::gpu_kernel_impl_nocas..."
    rows = [
        ("aten::_cudnn_attention_backward", "30.000ms"),
        ("aten::_cudnn_attention_forward", "10000.000us"),
        ("aten::cudnn_convolution", "20.000ms"),
        ("aten::convolution_backward", "15.000ms"),
        ("aten::mm", "500.000us"),
        ("aten::addmm", "0.002s"),
        (elementwise, "3.000ms"),
        (elementwise, "2.000ms"),
        ("void cudnn::engines_precompiled::nchwToNhwcKernel<__nv_bfloat16, __nv_bfloat1...", "4.000ms"),
        ("void cudnn::engines_precompiled::nhwcToNchwKernel<__nv_bfloat16, __nv_bfloat1...", "1.000ms"),
        ("aten::add_", "7.500ms"),
    ]
    text = _profile_table(
        "oneword on cuda:0, batch 4, 2 steps, sorted by self_device_time_total", rows, "100.000ms"
    ) + _profile_table("oneword on xpu:0, batch 2, 5 steps", [("aten::mm", "1.000s")], "4.000s", "Self XPU")
    block, other = profile_bound.parse(text)
    assert block["image_steps"] == 8 and block["total_ms"] == pytest.approx(100.0)
    assert block["rows"][elementwise] == pytest.approx(5.0)  # a truncated name repeats: its rows add up
    kinds = profile_bound.split(block)
    assert kinds["attention"] == pytest.approx(40.0) and kinds["convolution"] == pytest.approx(35.0)
    assert kinds["matmul"] == pytest.approx(2.5) and kinds["layout transposes"] == pytest.approx(5.0)
    assert kinds["other"] == pytest.approx(100.0 - 40.0 - 35.0 - 2.5)
    assert sum(kinds[k] for k in ("attention", "convolution", "matmul", "other")) == pytest.approx(block["total_ms"])
    report = profile_bound.report(block)
    assert "100.0 ms of device time over 8 image-steps = 12.50 ms each (80.0 img-steps/s" in report
    assert "9.69 ms per image-step -> 103 img-steps/s" in report  # 77.5 ms of compute over 8 image-steps
    assert "9.06 ms per image-step -> 110 img-steps/s" in report  # less the 5 ms of layout transposes
    assert other["image_steps"] == 10 and other["total_ms"] == pytest.approx(4000.0)
    assert profile_bound.split(other) == {
        "attention": 0.0,
        "convolution": 0.0,
        "matmul": pytest.approx(1000.0),
        "other": pytest.approx(3000.0),
        "layout transposes": 0.0,
    }
    with pytest.raises(SystemExit, match="not a device profile"):
        profile_bound.parse("## oneword on cpu, batch 4, 3 steps, sorted by self_cpu_time_total\nName  Self CPU\n")
