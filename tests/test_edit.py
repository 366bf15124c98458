"""`oneword edit`: blended latent diffusion with learned words.

Mechanics on the tiny random pipeline (seconds); the must-show figures on the embedded world model:
background PSNR after restore, and the learned concept inside the mask (oracle)."""

import numpy as np
import pytest
import torch
from PIL import Image

from oneword.editing import (
    blended_latents,
    box_mask,
    dilate_mask,
    edit,
    feather_mask,
    fill_region,
    latent_mask,
    load_mask,
    parse_box,
    working_size,
)
from oneword.errors import OnewordError
from oneword.evaluation import psnr

PROMPT = "a photo of a cat"


def _photo(w=20, h=24, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


# ------------------------------------------------------------------------------------------ masks
def test_box_parsing_and_mask():
    assert parse_box("1,2,10,12") == (1, 2, 10, 12)
    assert parse_box(" 1, 2 ,10.4,12 ") == (1, 2, 10, 12)
    for bad in ("1,2,3", "a,b,c,d", "1,2,3,4,5", ""):
        with pytest.raises(OnewordError, match="--box"):
            parse_box(bad)
    m = box_mask((2, 3, 6, 5), (8, 8))
    assert m.shape == (8, 8) and m.sum() == 4 * 2 and m[3, 2] and not m[5, 6]
    assert box_mask((-5, -5, 3, 3), (8, 8)).sum() == 9  # clipped to the photo
    with pytest.raises(OnewordError, match="outside"):
        box_mask((20, 20, 30, 30), (8, 8))
    with pytest.raises(OnewordError, match="empty"):
        box_mask((5, 5, 5, 9), (8, 8))


def test_mask_image_is_resized_and_alpha_counts_as_black(tmp_path):
    big = Image.new("L", (80, 96), 0)
    big.paste(255, (0, 0, 40, 96))  # left half white
    big.save(tmp_path / "m.png")
    m = load_mask(tmp_path / "m.png", (20, 24))
    assert m.shape == (24, 20) and m[:, :10].all() and not m[:, 10:].any()
    rgba = Image.new("RGBA", (20, 24), (255, 255, 255, 0))  # white but transparent: keep
    rgba.paste((255, 255, 255, 255), (0, 0, 5, 24))
    m = load_mask(rgba, (20, 24))
    assert m[:, :5].all() and not m[:, 5:].any()
    arr = np.zeros((24, 20))
    arr[2:4, 2:4] = 1
    assert load_mask(arr, (20, 24)).sum() == 4
    assert load_mask(np.uint8(arr * 255), (20, 24)).sum() == 4


@pytest.mark.parametrize("value, why", [(0, "empty"), (255, "whole photo")])
def test_empty_or_full_mask_is_refused(tmp_path, value, why):
    Image.new("L", (20, 24), value).save(tmp_path / "m.png")
    with pytest.raises(OnewordError, match=why):
        load_mask(tmp_path / "m.png", (20, 24))
    with pytest.raises(OnewordError, match=why):
        load_mask(np.full((24, 20), value), (20, 24))
    with pytest.raises(OnewordError, match="whole photo"):
        load_mask((0, 0, 20, 24), (20, 24))


def test_unreadable_mask(tmp_path):
    with pytest.raises(OnewordError, match="not found"):
        load_mask(tmp_path / "nope.png", (8, 8))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(OnewordError, match="not a readable image"):
        load_mask(tmp_path / "bad.png", (8, 8))


def test_dilate_feather_and_latent_mask():
    m = torch.zeros(16, 16)
    m[6:10, 6:10] = 1
    assert dilate_mask(m, 2).sum() == 8 * 8
    a = feather_mask(dilate_mask(m, 2), 3)
    assert (a[dilate_mask(m, 2) == 0] == 0).all()  # never outside the region
    assert a[4, 4] == pytest.approx(1 / 3) and a[7, 7] == 1.0  # ramps in from the edge
    edge = torch.zeros(16, 16)
    edge[:, :5] = 1  # touches the photo border: no seam there
    assert feather_mask(edge, 2)[:, 0].eq(1).all()
    one = torch.zeros(16, 16)
    one[7, 9] = 1  # a single pixel never vanishes in latent space
    lm = latent_mask(one, (4, 4))
    assert lm.sum() == 1 and lm[1, 2] == 1


def test_fill_region_hides_what_is_under_the_mask():
    arr = np.zeros((16, 16, 3), np.uint8)
    arr[:, :8] = (200, 0, 0)
    arr[:, 8:] = (0, 0, 200)
    arr[5:11, 5:11] = (255, 255, 0)  # the object to hide
    hole = torch.zeros(16, 16)
    hole[4:12, 4:12] = 1
    out = np.asarray(fill_region(Image.fromarray(arr), hole)).astype(int)
    keep = hole.numpy() == 0
    assert np.array_equal(out[keep], arr[keep].astype(int))  # outside: untouched
    inside = out[hole.numpy() == 1]
    assert inside[:, 1].max() < 40  # no yellow left
    assert out[8, 4, 0] > out[8, 11, 0] and out[8, 11, 2] > out[8, 4, 2]  # red side stays red, blue side blue


# ------------------------------------------------------------------------------------------ editing
def test_edit_keeps_every_unmasked_pixel(tiny_model):
    photo, box = _photo(), (4, 4, 12, 14)
    keep = ~load_mask(box, photo.size)
    out = edit(tiny_model, photo, box, PROMPT, steps=3, n=2, seed=5)
    assert len(out) == 2 and all(o.size == photo.size for o in out)
    for o in out:
        assert psnr(photo, o, keep) == float("inf")  # restore: the photo's own pixels
        assert psnr(photo, o, ~keep) < 30  # the masked region was regenerated
    assert np.asarray(out[0]).tobytes() != np.asarray(out[1]).tobytes()
    again = edit(tiny_model, photo, box, PROMPT, steps=3, n=1, seed=6)[0]
    assert np.array_equal(np.asarray(again), np.asarray(out[1]))  # output i uses seed + i
    raw = edit(tiny_model, photo, box, PROMPT, steps=3, seed=5, restore=False)[0]
    assert psnr(photo, raw, keep) < 40  # without restore: what the VAE gives back


def test_feathered_restore_stays_inside_the_mask(tiny_model):
    photo, box = _photo(), (4, 4, 14, 16)
    keep = ~load_mask(box, photo.size)
    soft = edit(tiny_model, photo, box, PROMPT, steps=2, feather=3)[0]
    hard = edit(tiny_model, photo, box, PROMPT, steps=2)[0]
    assert psnr(photo, soft, keep) == float("inf")
    assert psnr(photo, soft, ~keep) > psnr(photo, hard, ~keep)  # the ramp pulls the edge toward the photo
    grown = edit(tiny_model, photo, box, PROMPT, steps=2, dilate=2)[0]
    assert psnr(photo, grown, keep) < float("inf")  # dilation edits beyond the user's mask...
    far = np.ones_like(keep)
    far[2:18, 2:20] = False
    assert psnr(photo, grown, far) == float("inf")  # ...but only by 2 px


@pytest.mark.parametrize("fixture", ["tiny_dir", "tiny_v_dir"])
def test_latents_outside_the_mask_are_the_photos(request, fixture):
    from oneword.models import load_model

    model = load_model(str(request.getfixturevalue(fixture)), device="cpu")
    photo = _photo(16, 16)
    region = torch.from_numpy(load_mask((0, 0, 8, 16), photo.size).astype(np.float32))
    lat, src, m = blended_latents(model, photo, region, PROMPT, None, steps=4, first=0, guidance=3.0, seeds=[0])
    assert m.shape == src.shape[-2:] and 0 < m.sum() < m.numel()
    keep = (m == 0).expand_as(lat)
    assert torch.equal(lat[keep], src.expand_as(lat)[keep])
    assert not torch.allclose(lat[~keep], src.expand_as(lat)[~keep])


def test_full_cover_mask_samples_exactly_like_the_pipeline(tiny_model):
    """When the mask's latent cover is every cell, the loop is the pipeline's own DDIM + CFG sampler."""
    from oneword.sampling import generate

    photo = _photo(16, 16)
    ours = edit(tiny_model, photo, (0, 0, 16, 15), PROMPT, steps=3, guidance=4.0, n=2, seed=3, restore=False)
    theirs = generate(tiny_model, PROMPT, n=2, steps=3, guidance=4.0, seed=3)
    for a, b in zip(ours, theirs):
        assert np.abs(np.asarray(a, int) - np.asarray(b, int)).max() <= 1


def test_strength_and_start_step(tiny_model):
    photo, box = _photo(), (4, 4, 12, 14)
    half = edit(tiny_model, photo, box, PROMPT, steps=2, strength=0.5)[0]
    same = edit(tiny_model, photo, box, PROMPT, steps=2, start_step=1)[0]
    full = edit(tiny_model, photo, box, PROMPT, steps=2)[0]
    assert np.array_equal(np.asarray(half), np.asarray(same))
    assert not np.array_equal(np.asarray(half), np.asarray(full))
    for kw, msg in (
        (dict(strength=0), "strength"),
        (dict(strength=1.5), "strength"),
        (dict(start_step=4), "start-step"),
        (dict(n=0), "-n"),
        (dict(dilate=-1), "negative"),
    ):
        with pytest.raises(OnewordError, match=msg):
            edit(tiny_model, photo, box, PROMPT, steps=4, **kw)


def test_working_size_fits_the_model(tiny_model):
    assert working_size(tiny_model, (16, 16)) == (16, 16)
    assert working_size(tiny_model, (400, 300)) == (20, 16)  # short side at 16 px, multiples of 4
    out = edit(tiny_model, _photo(40, 30), (5, 5, 20, 20), PROMPT, steps=1)[0]
    assert out.size == (40, 30)


def _reference_cond(tiny_dir, prompt, words):
    """The prompt's conditioning from a fresh diffusers pipeline that loaded each word itself."""
    from diffusers import StableDiffusionPipeline

    ref = StableDiffusionPipeline.from_pretrained(tiny_dir, safety_checker=None, requires_safety_checker=False)
    for w in words:
        ref.load_textual_inversion(w.vectors, token=w.token)
    with torch.no_grad():
        return ref.encode_prompt(prompt, "cpu", 1, False)[0]


def test_learned_multi_vector_word_conditions_the_edit(tiny_dir, tiny_model):
    from oneword.concept import Concept

    torch.manual_seed(0)
    word = Concept("<ring>", torch.randn(2, tiny_model.hidden_size) * 3)
    photo, box = _photo(), (4, 4, 12, 14)
    base = edit(tiny_model, photo, box, "a photo of a ring", steps=2)[0]
    learned = edit(tiny_model, photo, box, "a photo of <ring>", [word], steps=2)[0]
    assert not np.array_equal(np.asarray(base), np.asarray(learned))
    again = edit(tiny_model, photo, box, "a photo of <ring>", [word], steps=2)[0]  # same model, same word: fine
    assert np.array_equal(np.asarray(again), np.asarray(learned))
    # the UNet is conditioned as diffusers conditions the prompt with both vectors, not with the first alone
    seen = []
    hook = tiny_model.unet.register_forward_pre_hook(
        lambda m, a, k: seen.append(k["encoder_hidden_states"].detach().clone()), with_kwargs=True
    )
    try:
        edit(tiny_model, photo, box, "a photo of <ring>", [word], steps=2, guidance=1.0)  # 1.0: no unconditional half
    finally:
        hook.remove()
    want = _reference_cond(tiny_dir, "a photo of <ring>", [word])
    assert len(seen) == 2 and all(torch.allclose(c, want, atol=1e-6) for c in seen)
    first_only = _reference_cond(tiny_dir, "a photo of <ring>", [Concept("<ring>", word.vectors[:1])])
    assert not torch.allclose(first_only, want, atol=1e-3)


def test_every_learned_word_of_the_prompt_reaches_the_text_encoder(tiny_dir, tiny_model):
    """Two learned words in one edit (an object and a style): both are installed, and the UNet is conditioned
    exactly as diffusers conditions the prompt with both loaded; with only the first loaded it would differ."""
    from oneword.concept import Concept

    g = torch.Generator().manual_seed(1)
    obj = Concept("<obj-a>", torch.randn(2, tiny_model.hidden_size, generator=g) * 2)
    style = Concept("<style-s>", torch.randn(1, tiny_model.hidden_size, generator=g) * 2, {"property": "style"})
    prompt = "a photo of <obj-a> in the style of <style-s>"
    seen = []
    hook = tiny_model.unet.register_forward_pre_hook(
        lambda m, a, k: seen.append(k["encoder_hidden_states"].detach().clone()), with_kwargs=True
    )
    try:
        edit(tiny_model, _photo(), (4, 4, 12, 14), prompt, [obj, style], steps=1, guidance=1.0)
    finally:
        hook.remove()
    both = _reference_cond(tiny_dir, prompt, [obj, style])
    assert len(seen) == 1 and torch.allclose(seen[0], both, atol=1e-6)
    assert not torch.allclose(_reference_cond(tiny_dir, prompt, [obj]), both, atol=1e-3)
    table = tiny_model.text_encoder.get_input_embeddings().weight
    for w in (obj, style):
        ids = tiny_model.tokenizer.convert_tokens_to_ids(w.tokens)
        assert torch.equal(table[ids].detach(), w.vectors)


# ------------------------------------------------------------------------------------------ CLI
def test_cli_edit(tiny_dir, tmp_path, capsys):
    from oneword.commands import main

    _photo(24, 24).save(tmp_path / "p.png")
    mask = Image.new("L", (48, 48), 0)
    mask.paste(255, (10, 10, 30, 30))
    mask.save(tmp_path / "m.png")
    out = tmp_path / "e.png"
    base = [
        "edit",
        str(tmp_path / "p.png"),
        "a photo of a cat",
        "--model",
        str(tiny_dir),
        "--device",
        "cpu",
        "--steps",
        "2",
    ]
    assert main([*base[:2], "--mask", str(tmp_path / "m.png"), *base[2:], "--out", str(out)]) == 0  # mask first
    assert Image.open(out).size == (24, 24)
    assert main(base + ["--box", "2,2,10,10", "-n", "2", "--feather", "1", "--out", str(tmp_path / "g.png")]) == 0
    assert (tmp_path / "g_00.png").exists() and (tmp_path / "g_01.png").exists()
    capsys.readouterr()
    Image.new("L", (24, 24), 0).save(tmp_path / "black.png")
    assert main(base + ["--mask", str(tmp_path / "black.png")]) == 2
    assert "black.png is empty (no white pixels)" in capsys.readouterr().err
    assert main(base + ["--box", "1,2,3"]) == 2
    assert main(base + ["--box", "0,0,2,2", "--strength", "2"]) == 2
    err = capsys.readouterr().err
    assert "--box must be four numbers" in err and "--strength must be in (0, 1]" in err
    assert main(base + ["--box", "0,0,2,2", "--mask", str(tmp_path / "m.png")]) == 2  # argparse's: one line too
    err = capsys.readouterr().err
    assert err.startswith("error: argument --mask: not allowed with argument --box") and err.count("\n") == 1


# ------------------------------------------------------------------------------------------ world model
def _world():
    from oneword.models import load_model

    return load_model(None, device="cpu")


def world_edit_case(seed: int = 0):
    """A world photo with one large yellow circle in the middle of a sky, and the box that covers it."""
    from oneword.world.render import Obj, Scene, render_scene

    scene = Scene((Obj("circle", "yellow", size="large", x=0.5, y=0.5),), background="sky", style="photo")
    return render_scene(scene, 32, seed), (5, 5, 27, 27)


def world_edit_figures(model, concept, judge, n=20, steps=None, seed=0, **kw) -> dict:
    """Edit the circle of `world_edit_case` into the learned word with n seeds; docs/applications.md's figures:
    PSNR outside the mask (with and without the background restore) and the oracle's rate of edits whose
    object has all of the world concept's attributes."""
    from oneword.world.concepts import NOVEL_CONCEPTS

    truth = NOVEL_CONCEPTS[concept.meta.get("world_concept") or concept.token.strip("<>").replace("-", "_")]
    photo, box = world_edit_case()
    keep = ~load_mask(box, photo.size)
    prompt = f"a photo of {concept.token} on a sky background"
    out = edit(model, photo, box, prompt, [concept], n=n, steps=steps, seed=seed, **kw)
    raw = edit(model, photo, box, prompt, [concept], n=n, steps=steps, seed=seed, restore=False, **kw)
    labels = judge.oracle(out)
    hit = [all(labels[a][i] == v for a, v in truth.attributes.items()) for i in range(n)]
    return {
        "prompt": prompt,
        "images": out,
        "oracle": float(np.mean(hit)),
        "per_attribute": {a: float(np.mean([x == v for x in labels[a]])) for a, v in truth.attributes.items()},
        "psnr_restored_min": min(psnr(photo, o, keep) for o in out),
        "psnr_latent_only_mean": float(np.mean([psnr(photo, o, keep) for o in raw])),
    }


def _oracle_rate(judge, images, **want) -> float:
    labels = judge.oracle(images)
    return float(np.mean([all(labels[a][i] == v for a, v in want.items()) for i in range(len(images))]))


def test_world_edit_keeps_the_background():
    model = _world()
    photo, box = world_edit_case()
    keep = ~load_mask(box, photo.size)
    prompt = "a photo of a pink heart on a sky background"
    out = edit(model, photo, box, prompt, n=4, feather=2)
    assert min(psnr(photo, o, keep) for o in out) >= 35  # the 35 dB bar (restore: the photo's own pixels)
    raw = edit(model, photo, box, prompt, n=4, restore=False)
    assert np.mean([psnr(photo, o, keep) for o in raw]) >= 24  # latent blending alone: about 26-29 dB measured


def test_world_edit_replaces_the_object_in_the_mask():
    """Replacing the yellow circle by a blue ring: the prompt's colour fills the mask and the old object's
    colour does not leak back, with and without --no-fill (the shipped 8-channel world VAE does not leak:
    blue 20/20 both ways; a 4-channel one did, CHANGELOG.md)."""
    from oneword.world.judge import load_judge

    model, judge = _world(), load_judge()
    photo, box = world_edit_case()
    prompt = "a photo of a blue ring on a sky background"
    for fill in (True, False):
        out = edit(model, photo, box, prompt, n=20, fill=fill)
        assert _oracle_rate(judge, out, colour="blue") >= 0.8, fill  # measured 1.0 both
        assert _oracle_rate(judge, out, colour="yellow") <= 0.1, fill


@pytest.fixture(scope="module")
def world_word(tmp_path_factory):
    """lime_star (its colour has no word), learned on the world model with a short run (~10 s)."""
    from oneword.invert import LearnConfig, learn
    from oneword.world.concepts import NOVEL_CONCEPTS

    model = _world()
    c = NOVEL_CONCEPTS["lime_star"]
    cfg = LearnConfig.with_defaults(
        model, token="<lime-star>", init=c.init_word, steps=150, early_stop=False, save_every=10_000
    )
    return model, learn(model, c.photos(5), cfg, tmp_path_factory.mktemp("lime"), progress=False)


@pytest.fixture(scope="module")
def caption_word(tmp_path_factory):
    """teal_ring (its colour has no word) learned as two vectors from its caption's words ("blue ring") for 300
    steps: the setting docs/applications.md recommends for edits (longer runs cost a 2-vector word editability)."""
    from oneword.invert import LearnConfig, learn
    from oneword.world.concepts import NOVEL_CONCEPTS

    model = _world()
    c = NOVEL_CONCEPTS["teal_ring"]
    cfg = LearnConfig.with_defaults(
        model,
        token="<teal-ring>",
        init=c.caption_words,
        vectors=2,
        seed=0,
        steps=300,
        early_stop=False,
        save_every=10_000,
    )
    return model, learn(model, c.photos(5), cfg, tmp_path_factory.mktemp("teal"), progress=False)


def test_world_edit_puts_a_caption_initialised_word_in_the_mask(caption_word):
    """The 70% bar: the whole learned concept (teal, ring, solid) in the mask in >= 70% of 20 edits, with
    the background restored exactly. Measured (docs/applications.md, experiments/world_probes/edit_probe.py): 90%, and
    85% / 85% for learning seeds 1 / 2; the paper's one vector gets 30-45% on this world."""
    from oneword.world.judge import load_judge

    model, concept = caption_word
    assert concept.vectors.shape[0] == 2
    fig = world_edit_figures(model, concept, load_judge(), n=20)
    assert fig["psnr_restored_min"] >= 35
    assert fig["oracle"] >= 0.7, fig["per_attribute"]


def test_world_edit_puts_the_learned_word_in_the_mask(world_word):
    """The learned word carries what no word can say (lime) and its shape into the masked region; the closest
    caption ("a green star") never gives lime. Measured on the shipped model (docs/applications.md): lime
    9/20, star 20/20, all attributes 9/20."""
    from oneword.world.judge import load_judge

    model, concept = world_word
    judge = load_judge()
    fig = world_edit_figures(model, concept, judge, n=20)
    assert fig["psnr_restored_min"] >= 35
    assert fig["per_attribute"]["colour"] >= 0.35, fig["per_attribute"]
    assert fig["per_attribute"]["shape"] >= 0.8, fig["per_attribute"]
    assert fig["oracle"] >= 0.3, fig
    photo, box = world_edit_case()
    caption = edit(model, photo, box, "a photo of a green star on a sky background", n=20)
    assert _oracle_rate(judge, caption, colour="lime") <= 0.2
