"""SDXL end to end on a tiny random SDXL pipeline (SDXL's real text widths 768 + 1280 and both tokenizers):
the engine's step against a plain diffusers SDXL step, learn -> file -> diffusers, resume after SIGKILL,
generate / variations / edit / evaluate / inspect / convert, and the refusals."""

import copy
import json
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import oneword.invert as inv
from oneword.concept import Concept
from oneword.data import encode_photos, read_photos, to_tensor
from oneword.invert import LearnConfig, _training_schedule, draw_batch, learn
from oneword.templates import OBJECT_TEMPLATES

TOKEN = "<teal-ring>"


@pytest.fixture(scope="module")
def xl_dir(tmp_path_factory):
    from oneword.tiny_models import make_tiny_sdxl_pipeline

    path = tmp_path_factory.mktemp("tiny-sdxl")
    make_tiny_sdxl_pipeline(path)
    return path


@pytest.fixture(scope="module")
def xl(xl_dir):
    from oneword.models import load_model

    return load_model(str(xl_dir), device="cpu")


@pytest.fixture(scope="module")
def xl_photos(tmp_path_factory):
    from conftest import write_photos

    return write_photos(tmp_path_factory.mktemp("xl-photos") / "photos", n=3)


@pytest.fixture(scope="module")
def xl_run(xl, xl_photos, tmp_path_factory):
    """A short SDXL learning run (2 vectors), its folder."""
    out = tmp_path_factory.mktemp("xl-run") / "run"
    learn(
        xl,
        xl_photos,
        LearnConfig(token=TOKEN, init="ring", vectors=2, steps=4, batch_size=2, save_every=2, val_every=2, lr=0.05),
        out,
        progress=False,
    )
    return out


def rel_err(a, b):
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


# ------------------------------------------------------------------------------------- the engine's step
class ReferenceXL:
    """A plain SDXL textual-inversion step as diffusers' textual_inversion_sdxl.py writes it: the token added
    to both tokenizers, both embedding matrices resized and trainable, the VAE run on the pixels, penultimate
    hidden states of both encoders, the second's pooled output, add_time_ids from original size, crop, target."""

    def __init__(self, model, vectors, n):
        names = [TOKEN] + [f"{TOKEN}_{i}" for i in range(1, n)]
        self.model, self.names, self.weights, self.encoders = model, names, [], []
        w1 = model.text_encoder.config.hidden_size
        for tok, te, part in (
            (model.tokenizer, model.text_encoder, vectors[:, :w1]),
            (model.tokenizer_2, model.text_encoder_2, vectors[:, w1:]),
        ):
            tok = copy.deepcopy(tok)
            assert tok.add_tokens(names) == n
            te = copy.deepcopy(te).float()
            te.resize_token_embeddings(len(tok))
            weight = te.get_input_embeddings().weight
            ids = tok.convert_tokens_to_ids(names)
            with torch.no_grad():
                weight[ids] = part
            weight.requires_grad_(True)
            self.encoders.append((tok, te, ids))
            self.weights.append(weight)

    def loss(self, images, b):
        model = self.model
        px = to_tensor(images, model.resolution)
        px = torch.cat([px, px.flip(-1)])
        dist = model.vae.float().encode(px[b.rows]).latent_dist
        latents = (dist.mean + dist.std * b.posterior_noise) * model.vae.config.scaling_factor
        texts = [OBJECT_TEMPLATES[int(t)].format(" ".join(self.names)) for t in b.templates]
        hidden, pooled = [], None
        for tok, te, _ in self.encoders:
            ids = tok(
                texts, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt"
            ).input_ids
            out = te(ids, output_hidden_states=True)
            hidden.append(out.hidden_states[-2])
            pooled = out[0]
        res, rows = model.resolution, []
        for im in images:  # diffusers' train_text_to_image_sdxl.py: Resize(res), then CenterCrop(res)
            w, h = im.size
            h2, w2 = (res, int(res * w / h)) if h <= w else (int(res * h / w), res)
            rows.append([h, w, int(round((h2 - res) / 2.0)), int(round((w2 - res) / 2.0)), res, res])
        time_ids = torch.tensor([(rows * 2)[r] for r in b.rows.tolist()], dtype=torch.float32)
        schedule = _training_schedule(model)
        noisy = schedule.add_noise(latents, b.noise, b.timesteps)
        pred = model.unet.float()(
            noisy, b.timesteps, torch.cat(hidden, -1), added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}
        ).sample
        return F.mse_loss(pred, b.noise)

    def grad(self):
        return torch.cat([w.grad[ids] for w, (_, _, ids) in zip(self.weights, self.encoders)], dim=-1)


@pytest.mark.parametrize("n", [1, 2])
def test_engine_step_equals_a_plain_diffusers_sdxl_step(xl, xl_photos, n):
    # photos of other shapes than square: their size and crop offset condition the UNet (SDXL's time_ids)
    images = [
        im.crop((0, 0, 64, 40)) if i % 2 else im.crop((0, 0, 50, 64)) for i, im in enumerate(read_photos(xl_photos))
    ]
    g = torch.Generator().manual_seed(n)
    vectors = torch.randn(n, xl.word_width, generator=g) * 0.02
    lat = xl.resolution // xl.pipe.vae_scale_factor
    b = draw_batch(torch.Generator().manual_seed(3), 2 * len(images), len(OBJECT_TEMPLATES), (4, lat, lat), 1000, 4)

    cache = encode_photos(xl, images, xl.resolution)
    v = torch.nn.Parameter(vectors.clone())
    with inv.learned_word(xl, TOKEN, v) as tok:
        ids = inv.encode_templates(tok, "object", TOKEN, n)
        assert ids.shape[1:] == (2, 77)  # one row per encoder
        loss = inv.diffusion_loss(
            xl,
            _training_schedule(xl),
            cache.sample(b.rows, b.posterior_noise),
            b.noise,
            b.timesteps,
            ids[b.templates],
            cache.sizes[b.rows],
        )
        loss.backward()
    ref = ReferenceXL(xl, vectors, n)
    ref_loss = ref.loss(images, b)
    ref_loss.backward()
    grad = ref.grad()
    w1 = xl.text_encoder.config.hidden_size
    assert float(grad[:, :w1].norm()) > 0 and float(grad[:, w1:].norm()) > 0  # both encoders get a gradient
    assert rel_err(loss, ref_loss) < 1e-5
    assert rel_err(v.grad[:, :w1], grad[:, :w1]) < 1e-4
    assert rel_err(v.grad[:, w1:], grad[:, w1:]) < 1e-4


def test_pooled_output_reads_the_end_token_even_when_the_config_says_eos_2(xl_dir, tmp_path):
    """Hub SDXL's text_encoder_2/config.json says eos_token_id 2: transformers would then pool at the highest
    token id, the new word; load_model makes both encoders pool at the end token."""
    from oneword.models import load_model

    folder = tmp_path / "xl"
    shutil.copytree(xl_dir, folder)
    cfg = json.loads((folder / "text_encoder_2" / "config.json").read_text())
    (folder / "text_encoder_2" / "config.json").write_text(json.dumps({**cfg, "eos_token_id": 2}))
    model = load_model(str(folder), device="cpu")
    assert model.text_encoder_2.config.eos_token_id == 49407
    v = torch.zeros(1, model.word_width)
    with inv.learned_word(model, TOKEN, v) as tok:
        ids = inv.encode_templates(tok, "object", TOKEN, 1)[:1, 1]
        out = model.text_encoder_2(ids, output_hidden_states=True)
        end = int((ids[0] == 49407).nonzero()[0])
        expected = model.text_encoder_2.text_projection(out.last_hidden_state[0, end])
    assert torch.allclose(out.text_embeds[0], expected, atol=1e-6)


# ------------------------------------------------------------------------------------- learn -> file -> tools
def test_learned_file_loads_into_both_encoders_with_diffusers_exactly(xl_run, xl_dir):
    from diffusers import StableDiffusionXLPipeline

    ckpt = load_file(xl_run / "checkpoint.safetensors")["vectors"]
    emb = load_file(xl_run / "learned_embeds.safetensors")
    assert set(emb) == {"clip_l", "clip_g"} and emb["clip_l"].shape == (2, 768) and emb["clip_g"].shape == (2, 1280)
    run = json.loads((xl_run / "run.json").read_text())
    assert run["status"] in ("done", "early_stopped") and run["model"]["family"] == "sdxl"
    pipe = StableDiffusionXLPipeline.from_pretrained(xl_dir, local_files_only=True)
    pipe.load_textual_inversion(emb["clip_l"], token=TOKEN, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer)
    pipe.load_textual_inversion(
        emb["clip_g"], token=TOKEN, text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2
    )
    names = [TOKEN, f"{TOKEN}_1"]
    rows_l = pipe.text_encoder.get_input_embeddings().weight[pipe.tokenizer.convert_tokens_to_ids(names)]
    rows_g = pipe.text_encoder_2.get_input_embeddings().weight[pipe.tokenizer_2.convert_tokens_to_ids(names)]
    assert torch.equal(torch.cat([rows_l, rows_g], -1).detach(), ckpt)
    start = torch.cat(
        [
            pipe.text_encoder.get_input_embeddings().weight[pipe.tokenizer("ring").input_ids[1]],
            pipe.text_encoder_2.get_input_embeddings().weight[pipe.tokenizer_2("ring").input_ids[1]],
        ]
    )
    assert not torch.equal(ckpt[0], start)  # it learned (both parts started from "ring" in their own encoder)


def test_sdxl_init_starts_each_part_from_its_own_encoder(xl):
    v = inv.init_vectors(xl, "ring", 2)
    row = xl.tokenizer("ring", add_special_tokens=False).input_ids
    assert torch.equal(v[0, :768], xl.text_encoder.get_input_embeddings().weight[row].mean(0))
    assert torch.equal(v[1, 768:], xl.text_encoder_2.get_input_embeddings().weight[row].mean(0))


class Judge:
    """A stand-in CLIP judge: grey 4x4 thumbnails as image features."""

    name = "pixels"

    def image_features(self, images):
        x = torch.stack(
            [torch.tensor(list(im.convert("L").resize((4, 4)).getdata()), dtype=torch.float32) for im in images]
        )
        return F.normalize(x - x.mean(-1, keepdim=True) + 1e-3, dim=-1)

    def text_features(self, texts):
        return F.normalize(torch.ones(len(texts), 16), dim=-1)


def test_generate_variations_edit_evaluate_inspect_run_on_sdxl(xl_dir, xl_run, xl_photos, tmp_path, capsys):
    from PIL import Image

    from oneword.commands import main
    from oneword.editing import edit
    from oneword.evaluation import EvalConfig, evaluate
    from oneword.formats import load_concepts
    from oneword.models import load_model
    from oneword.sampling import generate, variations

    xl = load_model(str(xl_dir), device="cpu")  # a model of its own: generate installs the word into it
    concept = load_concepts(xl_run)[0]
    assert concept.parts is not None
    report = evaluate(
        xl, read_photos(xl_photos), [concept], Judge(), config=EvalConfig(n=1, steps=2, bootstrap=20), prompts="paper"
    )
    assert report["results"][0]["prompts"]
    imgs = generate(xl, f"a photo of {TOKEN}", [concept], n=2, steps=2)
    assert len(imgs) == 2 and imgs[0].size == (xl.resolution, xl.resolution)
    assert generate(xl, f"a photo of {TOKEN}", [concept], n=1, steps=2)[0].tobytes() == imgs[0].tobytes()
    assert len(variations(xl, concept, n=1, steps=2)) == 1
    photo = Image.open(sorted(xl_photos.glob("*.png"))[0])
    out = edit(xl, photo, (8, 8, 40, 40), f"a photo of {TOKEN}", [concept], steps=2)
    assert out[0].size == photo.size

    capsys.readouterr()
    assert main(["inspect", str(xl_run / "learned_embeds.safetensors"), "--model", str(xl.identity["source"])]) == 0
    text = capsys.readouterr().out
    assert "clip_l vector 0 nearest" in text and "clip_g vector 1 nearest" in text


def test_convert_writes_and_reads_diffusers_two_file_layout(xl_run, xl_dir, tmp_path, capsys):
    from diffusers import StableDiffusionXLPipeline

    from oneword.commands import main
    from oneword.formats import load_concepts

    out = tmp_path / "learned_embeds.safetensors"
    capsys.readouterr()
    assert main(["convert", str(xl_run), str(out), "--format", "diffusers"]) == 0
    assert "learned_embeds_2.safetensors" in capsys.readouterr().out  # both files named
    one, two = load_file(out), load_file(tmp_path / "learned_embeds_2.safetensors")
    emb = load_file(xl_run / "learned_embeds.safetensors")
    assert torch.equal(one[TOKEN], emb["clip_l"]) and torch.equal(two[TOKEN], emb["clip_g"])
    # diffusers loads them by path, one per encoder
    pipe = StableDiffusionXLPipeline.from_pretrained(xl_dir, local_files_only=True)
    pipe.load_textual_inversion(str(out), text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer)
    pipe.load_textual_inversion(
        str(tmp_path / "learned_embeds_2.safetensors"), text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2
    )
    # and convert reads the pair back as one word
    back = tmp_path / "one.safetensors"
    assert main(["convert", str(out), str(back)]) == 0
    assert {k: v.shape for k, v in load_file(back).items()} == {"clip_l": (2, 768), "clip_g": (2, 1280)}
    (c,) = load_concepts(tmp_path)  # a diffusers output folder
    assert torch.equal(c.parts["clip_g"], emb["clip_g"])


def test_learn_many_learns_sdxl_words_each_as_if_alone(xl, xl_dir, tmp_path):
    """learn-many on SDXL: words of different vector counts, properties and photo shapes share a batch (one
    refill); each equals the word `learn` gives alone (test_many's tolerance), time ids per photo included, and
    its file loads into both encoders with diffusers exactly."""
    import numpy as np
    from diffusers import StableDiffusionXLPipeline
    from PIL import Image

    from oneword.many import Job, learn_many

    shared = dict(batch_size=2, save_every=3, val_every=2, min_steps=1000, lr=5e-2)
    specs = [  # (job, photo count, photo size): non-square photos give non-zero crop offsets in the time ids
        (dict(token="<xa>", init="ring", steps=5, seed=0), 3, (64, 64)),
        (dict(token="<xb>", init="blue", vectors=2, property="style", steps=3, seed=1), 4, (96, 48)),
        (dict(token="<xc>", init="dot", steps=4, seed=2), 3, (40, 72)),
    ]
    jobs = []
    for i, (spec, n, size) in enumerate(specs):
        folder = tmp_path / "photos" / f"c{i}"
        folder.mkdir(parents=True)
        rng = np.random.default_rng(i)
        for j in range(n):
            Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"{j}.png")
        jobs.append(Job(photos=str(folder), **spec))
    rows = learn_many(xl, jobs, tmp_path / "many", slots=2, progress=False, **shared)
    assert [r["status"] for r in rows] == ["done"] * 3 and [r["steps"] for r in rows] == [5, 3, 4]
    for job in jobs:
        name = job.token.strip("<>")
        alone = learn(
            xl, job.photos, LearnConfig(**{**shared, **job.overrides()}), tmp_path / "alone" / name, progress=False
        )
        together = load_file(tmp_path / "many" / name / "learned_embeds.safetensors")
        for part, width in (("clip_l", 768), ("clip_g", 1280)):
            assert together[part].shape == (job.vectors or 1, width)
            assert torch.allclose(together[part], alone.parts[part], rtol=1e-4, atol=1e-5), (job.token, part)
        run = json.loads((tmp_path / "many" / name / "run.json").read_text())
        assert run["model"]["family"] == "sdxl" and run["engine"]["slots"] == 2
    emb = load_file(tmp_path / "many" / "xb" / "learned_embeds.safetensors")
    start = torch.cat(
        [
            xl.text_encoder.get_input_embeddings().weight[xl.tokenizer("blue").input_ids[1]],
            xl.text_encoder_2.get_input_embeddings().weight[xl.tokenizer_2("blue").input_ids[1]],
        ]
    )
    assert not torch.equal(torch.cat([emb["clip_l"][0], emb["clip_g"][0]]), start)  # both parts learned
    pipe = StableDiffusionXLPipeline.from_pretrained(xl_dir, local_files_only=True)
    pipe.load_textual_inversion(emb["clip_l"], token="<xb>", text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer)
    pipe.load_textual_inversion(
        emb["clip_g"], token="<xb>", text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2
    )
    names = ["<xb>", "<xb>_1"]
    rows_l = pipe.text_encoder.get_input_embeddings().weight[pipe.tokenizer.convert_tokens_to_ids(names)]
    rows_g = pipe.text_encoder_2.get_input_embeddings().weight[pipe.tokenizer_2.convert_tokens_to_ids(names)]
    assert torch.equal(rows_l.detach(), emb["clip_l"]) and torch.equal(rows_g.detach(), emb["clip_g"])


# ------------------------------------------------------------------------------------- interruption
def _env():
    import os

    e = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    e["PYTHONPATH"] = os.pathsep.join([os.getcwd(), e.get("PYTHONPATH", "")])
    return e


def _step(run_dir):
    try:
        return json.loads((run_dir / "run.json").read_text())["step"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def test_sigkill_then_resume_is_bit_identical_on_sdxl(xl_dir, xl_photos, tmp_path):
    steps = 10

    def cmd(out):
        return [
            sys.executable,
            "-m",
            "oneword",
            "learn",
            str(xl_photos),
            "--token",
            "<k>",
            "--init",
            "ring",
            "--vectors",
            "2",
            "--model",
            str(xl_dir),
            "--device",
            "cpu",
            "--out",
            str(out),
            "--steps",
            str(steps),
            "--batch-size",
            "1",
            "--save-every",
            "1",
            "--quiet",
        ]

    whole = tmp_path / "whole"
    subprocess.run(cmd(whole), env=_env(), check=True, timeout=300)
    expected = load_file(whole / "learned_embeds.safetensors")
    part, rng, kills, command = tmp_path / "part", random.Random(1), 0, cmd(tmp_path / "part")
    for _ in range(2):
        proc = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        target, start = _step(part) + rng.randint(2, 5), time.time()
        while proc.poll() is None and _step(part) < target and time.time() - start < 120:
            time.sleep(0.05)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        command = [sys.executable, "-m", "oneword", "learn", "--resume", str(part), "--device", "cpu", "--quiet"]
    assert kills >= 1
    subprocess.run(command, env=_env(), check=True, timeout=300)
    assert _step(part) == steps
    got = load_file(part / "learned_embeds.safetensors")
    assert set(got) == {"clip_l", "clip_g"}
    assert all(torch.equal(got[k], expected[k]) for k in got)


# ------------------------------------------------------------------------------------- refusals
def _refused(capsys, argv, *files_not_written):
    from oneword.commands import main

    capsys.readouterr()
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    for f in files_not_written:
        assert not f.exists()
    return err


def test_wrong_family_words_are_refused_naming_both(xl_dir, tiny_dir, xl_run, tmp_path, capsys):
    from oneword.formats import save_concept

    sd1 = tmp_path / "sd1.safetensors"
    save_concept(Concept("<w>", torch.randn(1, 32)), sd1)
    out = tmp_path / "o.png"
    err = _refused(
        capsys,
        ["generate", "a <w>", "--embeds", sd1, "--model", xl_dir, "--device", "cpu", "--steps", "1", "--out", out],
        out,
    )
    assert "SD1.x/2.x" in err and "SDXL" in err
    err = _refused(
        capsys,
        [
            "generate",
            f"a {TOKEN}",
            "--embeds",
            xl_run,
            "--model",
            tiny_dir,
            "--device",
            "cpu",
            "--steps",
            "1",
            "--out",
            out,
        ],
        out,
    )
    assert "SDXL" in err and "SD1.x/2.x" in err
    bad = tmp_path / "mixed.safetensors"
    save_file({"clip_l": torch.zeros(2, 768), "clip_g": torch.zeros(3, 1280)}, bad)
    err = _refused(
        capsys, ["generate", "a <mixed>", "--embeds", bad, "--model", xl_dir, "--device", "cpu", "--out", out], out
    )
    assert "clip_l" in err and "clip_g" in err


def test_sdxl_word_as_pt_and_bad_resolution_are_refused(xl_dir, xl_run, xl_photos, tmp_path, capsys):
    pt = tmp_path / "w.pt"
    err = _refused(capsys, ["convert", xl_run, pt], pt)
    assert ".safetensors" in err
    out = tmp_path / "run"
    err = _refused(
        capsys,
        [
            "learn",
            xl_photos,
            "--token",
            "<r>",
            "--model",
            xl_dir,
            "--device",
            "cpu",
            "--resolution",
            "18",
            "--out",
            out,
            "--quiet",
        ],
        out / "checkpoint.safetensors",
    )
    assert "multiple of 4" in err
    img = tmp_path / "g.png"
    err = _refused(
        capsys, ["generate", "a cat", "--model", xl_dir, "--device", "cpu", "--height", "18", "--out", img], img
    )
    assert "multiple of 4" in err


def test_missing_second_encoder_and_unsupported_families_are_refused(xl_dir, tmp_path, capsys):
    broken = tmp_path / "no-te2"
    shutil.copytree(xl_dir, broken)
    shutil.rmtree(broken / "text_encoder_2")
    out = tmp_path / "o.png"
    err = _refused(capsys, ["generate", "a cat", "--model", broken, "--device", "cpu", "--out", out], out)
    assert "second text encoder" in err
    sd3 = tmp_path / "sd3"
    sd3.mkdir()
    (sd3 / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusion3Pipeline"}))
    err = _refused(capsys, ["generate", "a cat", "--model", sd3, "--device", "cpu", "--out", out], out)
    assert "not supported yet" in err
    flux = tmp_path / "flux.safetensors"
    save_file(
        {
            "double_blocks.0.img_attn.qkv.weight": torch.zeros(4, 4),
            "double_blocks.0.img_attn.proj.weight": torch.zeros(4, 4),
        },
        flux,
    )
    err = _refused(capsys, ["generate", "a cat", "--model", flux, "--device", "cpu", "--out", out], out)
    assert "not supported" in err


def test_speed_benchmark_runs_sdxl_against_diffusers_sdxl_loop(tmp_path, capsys):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks import speed

    out = tmp_path / "speed.json"
    assert (
        speed.main(
            [
                "--model",
                "tiny-sdxl",
                "--batch",
                "1",
                "--steps",
                "1",
                "--warmup",
                "1",
                "--device",
                "cpu",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    results = json.loads(out.read_text())["results"]
    assert {r["system"] for r in results} == {"oneword", "reference"}
    assert all(r["image_steps_per_s"] > 0 and r["model"] == "tiny-sdxl" for r in results)
    assert "ratio/reference" in capsys.readouterr().out


# ------------------------------------------------------------------------------------- a photo encoder for SDXL
def test_a_photo_encoder_trains_through_both_encoders_and_learn_starts_from_its_word(
    xl, xl_photos, tiny_clip_dir, tmp_path
):
    from oneword import load_concepts
    from oneword.encoder_training import train_photo_encoder
    from oneword.judges import load_judge
    from oneword.photo_encoder import encoder_vectors

    photos = read_photos(xl_photos)
    text_encoders = [e.text_encoder for e in xl.family.encoders(xl.pipe)]
    frozen = [copy.deepcopy(m.state_dict()) for m in (xl.unet, *text_encoders)]
    path = tmp_path / "xl-encoder.safetensors"
    judge = load_judge(str(tiny_clip_dir))
    sets, props = [photos, photos[:2]], [0, 1]
    train_photo_encoder(xl, judge, sets, props, path, str(tiny_clip_dir), max_steps=2, batch=2, hidden=16, log=print)
    for before, m in zip(frozen, (xl.unet, *text_encoders)):
        assert all(torch.equal(v, m.state_dict()[k]) for k, v in before.items())
    start, _ = encoder_vectors(xl, photos, "object", 2, path=path)
    assert start.shape == (2, 768 + 1280)
    out = tmp_path / "run"
    cfg = LearnConfig(token="<enc>", init=f"encoder:{path}", vectors=2, steps=1, lr=0.0, early_stop=False, batch_size=2)
    learn(xl, xl_photos, cfg, out, progress=False)
    word = load_concepts(out / "learned_embeds.safetensors")[0]
    assert torch.allclose(xl.family.word_vectors(xl.pipe, word), start, atol=1e-6)


def test_each_sample_of_an_encoder_batch_reads_its_own_word_in_both_encoders(xl):
    """The photo encoder's batch gives sample b the word in row b of its table: the same conditioning (both
    encoders' states, the pooled text) as that word installed alone the way learn installs it."""
    from oneword.encoder_training import per_sample_words
    from oneword.invert import learned_word
    from oneword.photo_encoder import TOKEN
    from oneword.templates import encode_templates

    words = torch.randn(2, 768 + 1280, generator=torch.Generator().manual_seed(0)) * 0.3
    with torch.no_grad(), per_sample_words(xl) as (set_words, templates, own_ids):
        set_words(words)
        together = xl.family.unet_conditioning(xl, own_ids(templates["object"][:2]))
    for b in range(2):
        with torch.no_grad(), learned_word(xl, TOKEN, words[b : b + 1]) as tokenizer:
            alone = xl.family.unet_conditioning(xl, encode_templates(tokenizer, "object", TOKEN, 1)[b : b + 1])
        assert torch.allclose(together["encoder_hidden_states"][b], alone["encoder_hidden_states"][0], atol=1e-5)
        pooled = together["added_cond_kwargs"]["text_embeds"]
        assert torch.allclose(pooled[b], alone["added_cond_kwargs"]["text_embeds"][0], atol=1e-5)
