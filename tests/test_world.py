"""The embedded world: renderer, captions, novel concepts, the shipped model and judge, a tiny pretrain."""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from oneword.errors import OnewordError  # noqa: E402
from oneword.world import judge_path, model_path  # noqa: E402
from oneword.world import render as R  # noqa: E402
from oneword.world.concepts import (  # noqa: E402
    BALANCED_SET,
    HELD_OUT,
    NOVEL_CONCEPTS,
    biased_word,
    fair_photos,
    pretraining_exclusions,
)

# the bars for held-out-combination generation, checked at small scale (full scale: docs/world.md,
# 200 prompts: shape 97.5%, colour 100%, background 100%, style 96.0%; this test's 32 prompts measured
# shape 96.9%, colour 100%, background 100%, style 96.9%)
HELDOUT_BARS = {"shape": 0.85, "colour": 0.85, "background": 0.85, "style": 0.85}


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(model_path() / "tokenizer"))


# ------------------------------------------------------------------------------------------ renderer
def test_render_is_deterministic_and_seed_dependent():
    s = R.random_scene(np.random.default_rng(3))
    a = np.asarray(R.render_scene(s, 32, 7))
    b = np.asarray(R.render_scene(s, 32, 7))
    c = np.asarray(R.render_scene(s, 32, 8))
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    assert (a == b).all()
    assert (a != c).any()
    assert R.random_scene(np.random.default_rng(3)) == s


def test_world_has_the_required_variety():
    assert len(R.NAMED_SHAPES) >= 8 and len(R.NAMED_COLOURS) >= 8 and len(R.BACKGROUNDS) >= 6
    assert len(R.NAMED_STYLES) >= 4 and R.UNNAMED_COLOURS and R.UNNAMED_SHAPES and R.UNNAMED_STYLES
    rng = np.random.default_rng(0)
    scenes = [R.random_scene(rng, p_unnamed=0.3) for _ in range(3000)]
    seen = Counter()
    for s in scenes:
        seen.update(("bg", s.background) for _ in [0])
        seen.update([("style", s.style), ("count", s.count)])
        for o in s.objects:
            seen.update([("shape", o.shape), ("colour", o.colour), ("pattern", o.pattern)])
    for sh in R.SHAPES:
        assert seen[("shape", sh)]
    for c in R.COLOURS:
        assert seen[("colour", c)]
    for b in R.BACKGROUNDS:
        assert seen[("bg", b)]
    for st in R.STYLES:
        assert seen[("style", st)]
    assert seen[("count", 1)] and seen[("count", 2)] and seen[("pattern", "striped")] and seen[("pattern", "dotted")]
    for st in R.STYLES:  # every style renders
        im = R.render_scene(R.random_scene(rng, style=st, count=2), 32, 1)
        assert im.size == (32, 32) and im.mode == "RGB"


def test_pretraining_distribution_holds_out_combinations_and_is_biased():
    rng = np.random.default_rng(1)
    excl = pretraining_exclusions()
    scenes = [R.pretraining_scene(rng, excl) for _ in range(3000)]
    assert not any(R.held_out_pairs(s) for s in scenes)
    assert not any((o.shape, o.colour, o.pattern) in excl for s in scenes for o in s.objects)
    balloons = [o.colour for s in scenes for o in s.objects if o.shape == "balloon"]
    assert len(balloons) > 50 and 0.8 < balloons.count("red") / len(balloons) < 0.97
    # the oracle's images show held-out combinations too (it measures them), never a novel concept as such
    images = [R.image_scene(rng, excl) for _ in range(1000)]
    assert any(R.held_out_pairs(s) for s in images)
    assert not any((o.shape, o.colour, o.pattern) in excl for s in images for o in s.objects)


def test_check_names_the_kind_of_each_held_out_combination():
    """`world check` breaks held-out accuracy down by kind of unseen pair; each check-time scene has one."""
    from oneword.world.check import heldout_scenes
    from oneword.world.render import held_out_kinds

    rng = np.random.default_rng(3)
    s = R.random_scene(rng, named_only=True, count=1, shape="star", colour="blue", style="pixel", background="sky")
    assert held_out_kinds(s) == [("shape", "colour"), ("shape", "style")]
    s = R.random_scene(rng, named_only=True, count=1, shape="star", colour="red", style="sketch", background="sky")
    assert held_out_kinds(s) == [("colour", "background")]
    assert all(held_out_kinds(sc) for sc in heldout_scenes(50, seed=0, count=1))


# ------------------------------------------------------------------------------------------ captions
def test_captions_use_only_world_words_and_hide_unnamed_values(tokenizer):
    rng = np.random.default_rng(2)
    words = set(R.world_words())
    too_long = 0
    for _ in range(300):
        s = R.random_scene(rng, p_unnamed=0.4)
        c = R.caption(s, rng)
        assert set(c.replace("-", " ").split()) <= words, c
        too_long += len(tokenizer(c).input_ids) > tokenizer.model_max_length  # rare: two objects + "close-up"
        assert len(tokenizer(R.prompt_for(s)).input_ids) <= tokenizer.model_max_length
        for bad in R.UNNAMED_COLOURS + R.UNNAMED_SHAPES + R.UNNAMED_STYLES + ("striped", "dotted"):
            assert bad not in c.split()
    assert too_long <= 3
    s = R.Scene((R.Obj("crescent", "teal", "striped", "small"),), "sky", "halftone")
    assert R.caption(s, 0, full=True) == "a picture of a small object on a sky background"
    two = R.Scene((R.Obj("star", "red", x=0.25), R.Obj("ring", "blue", x=0.75)), "grass", "sketch")
    assert R.prompt_for(two) == "a sketch of a red star and a blue ring on a grass background"
    assert (
        R.prompt_for(R.Scene((R.Obj("heart", "orange", size="small"),), "black", "painting"))
        == "a painting of a small orange heart on a black background"
    )


def test_caption_hedge_names_unnamed_colours_only_by_their_neighbours():
    teal = R.Scene((R.Obj("ring", "teal", size="small"),), "sky", "photo")
    rng = np.random.default_rng(0)
    plain = {R.caption(teal, rng) for _ in range(200)}
    assert not any(w in c.split() for c in plain for w in R.NAMED_COLOURS + R.UNNAMED_COLOURS)
    hedged = [R.caption(teal, rng, hedge=1.0) for _ in range(400)]
    said = {w for c in hedged for w in c.split() if w in R.NAMED_COLOURS + R.UNNAMED_COLOURS}
    assert said == {"blue", "green"}  # both neighbours, nothing else, never "teal"
    assert (
        0.7 < np.mean([("blue" in c.split()) or ("green" in c.split()) for c in hedged]) < 1.0
    )  # colour word dropped ~10%
    red = R.Scene((R.Obj("ring", "red", size="small"),), "sky", "photo")
    assert all("blue" not in R.caption(red, rng, hedge=1.0).split() for _ in range(50))  # named colours unchanged


def test_world_words_are_single_tokens(tokenizer):
    from oneword.templates import template_words

    for w in R.world_words():
        assert len(tokenizer(w, add_special_tokens=False).input_ids) == 1, w
    assert len(tokenizer("close-up", add_special_tokens=False).input_ids) == 3
    assert {w for w in template_words() if "-" not in w} <= set(R.world_words())
    assert len(tokenizer("zebra", add_special_tokens=False).input_ids) > 1  # other text still tokenizes


# ------------------------------------------------------------------------------------------ concepts
def test_novel_concepts(tokenizer):
    assert len(NOVEL_CONCEPTS) >= 12
    assert NOVEL_CONCEPTS["teal_ring"].caption_words == "blue ring"  # the init text of a 2-vector word
    kinds = Counter(c.kind for c in NOVEL_CONCEPTS.values())
    assert kinds["object"] >= 6 and kinds["style"] >= 2
    assert set(HELD_OUT) <= set(NOVEL_CONCEPTS) and 0 < len(HELD_OUT) < len(NOVEL_CONCEPTS)
    words = set(R.world_words())
    for name, c in NOVEL_CONCEPTS.items():
        if name in HELD_OUT:
            continue  # held out of every test and tuning loop: not rendered here
        assert c.init_word in words and set(c.caption.split()) <= words
        assert c.caption.endswith(c.caption_words) and c.caption_words.split()[0] not in ("a", "an", "the")
        assert len(tokenizer(c.init_word, add_special_tokens=False).input_ids) == 1
        photos = c.photos(5, seed=0)
        assert len(photos) == 5 and all(p.size == (32, 32) for p in photos)
        arrs = [np.asarray(p) for p in photos]
        assert all((arrs[0] != a).any() for a in arrs[1:])
        assert (np.asarray(c.photos(3, seed=0)[0]) == arrs[0]).all()
        assert (np.asarray(c.photos(3, seed=1)[0]) != arrs[0]).any()
        a = c.attributes
        if c.kind == "object":
            assert a["shape"] in R.UNNAMED_SHAPES or a["colour"] in R.UNNAMED_COLOURS or a["pattern"] != "solid"
        else:
            assert a["style"] in R.UNNAMED_STYLES
        assert c.unnamed and all(a[k] == v for k, v in c.unnamed.items())  # something has no word
    assert NOVEL_CONCEPTS["teal_ring"].unnamed == {"colour": "teal"}
    assert NOVEL_CONCEPTS["red_crescent"].unnamed == {"shape": "crescent"}
    assert NOVEL_CONCEPTS["striped_square"].unnamed == {"pattern": "striped"}


def test_late_tuning_concepts_have_two_unnamed_attributes_and_are_not_novel_concepts(tokenizer):
    from oneword.world.concepts import LATE_CONCEPTS, concept

    words = set(R.world_words())
    for name, c in LATE_CONCEPTS.items():
        assert name not in NOVEL_CONCEPTS and name not in HELD_OUT and concept(name) is c
        assert len(c.unnamed) == 2, c.unnamed  # like the held-out teal_crescent
        assert c.init_word in words and set(c.caption.split()) <= words
        assert (c.attributes["shape"], c.attributes["colour"], c.attributes["pattern"]) not in pretraining_exclusions()
        assert len(c.photos(2, seed=0)) == 2
    assert concept("teal_ring") is NOVEL_CONCEPTS["teal_ring"]
    with pytest.raises(KeyError, match="no world concept"):
        concept("plaid_moon")


def test_unseen_tuning_concepts_show_a_pair_pretraining_never_draws():
    from oneword.world.concepts import UNSEEN_CONCEPTS, concept

    words = set(R.world_words())
    for name, c in UNSEEN_CONCEPTS.items():
        assert name not in NOVEL_CONCEPTS and name not in HELD_OUT and concept(name) is c
        assert c.unnamed == {"pattern": c.attributes["pattern"]} and set(c.caption.split()) <= words
        scene = c.scene(np.random.default_rng(0))
        assert ("shape", "colour") in R.held_out_kinds(scene)  # so pretraining_scene rejects every scene with it
        assert len(c.photos(2, seed=0)) == 2
    rng = np.random.default_rng(1)
    pairs = {(o.shape, o.colour) for _ in range(300) for o in R.pretraining_scene(rng).objects}
    assert not pairs & {(c.attributes["shape"], c.attributes["colour"]) for c in UNSEEN_CONCEPTS.values()}


def test_biased_word_and_fair_photos():
    """The biased word: a balloon whose colour is not given is drawn red 9 times in 10 (without the bias, as
    often as any named colour). The fair photos show it in every balanced colour equally often, as the
    oracle reads them."""
    from oneword.world.judge import load_judge

    word, colour = biased_word()
    assert word in R.NAMED_SHAPES and colour in R.NAMED_COLOURS and colour in BALANCED_SET
    rng = np.random.default_rng(5)
    drawn = Counter(R.random_scene(rng, count=1, shape=word).objects[0].colour for _ in range(2000))
    unbiased = Counter(
        R.random_scene(rng, count=1, shape=word, biased=False, named_only=True).objects[0].colour for _ in range(2000)
    )
    assert 0.87 < drawn[colour] / 2000 < 0.95 and drawn.most_common(1)[0][0] == colour
    assert unbiased[colour] / 2000 < 2 / len(R.NAMED_COLOURS) and set(unbiased) == set(R.NAMED_COLOURS)
    per_colour = 3
    photos = fair_photos(per_colour * len(BALANCED_SET), seed=0)
    labels = load_judge().oracle(photos)
    assert labels["shape"] == [word] * len(photos)
    seen = Counter(labels["colour"])
    assert set(seen) == set(BALANCED_SET), seen  # every balanced colour ...
    assert max(seen.values()) - min(seen.values()) <= 1, seen  # ... about equally often (measured: 3 each)
    assert seen[colour] <= per_colour + 1, seen  # the bias colour no more than the others


# ------------------------------------------------------------------------------------------ shipped model
def test_shipped_model_loads_and_generates():
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(model_path()))
    assert isinstance(pipe.scheduler, DDIMScheduler)
    assert pipe.unet.dtype == torch.float32 and pipe.text_encoder.dtype == torch.float32
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        ["a photo of a red star on a white background"] * 2,
        num_inference_steps=3,
        generator=torch.Generator().manual_seed(0),
    ).images
    assert len(out) == 2 and out[0].size == (32, 32)
    total = sum(f.stat().st_size for d in (model_path(), judge_path()) for f in d.rglob("*") if f.is_file())
    assert total < 25 * 2**20


def test_shipped_model_follows_prompts_at_small_scale():
    """`oneword world check` at small scale: prompts whose attribute combinations were held out of
    pretraining (docs/world.md's bars), two objects and the biased word."""
    from oneword.world.check import run_check

    res = run_check(n=32, n_two=8, n_bias=16, n_oracle=64, steps=25, guidance=7.5, log=lambda m: None)
    gen = res["heldout_generation"]
    for k, bar in HELDOUT_BARS.items():
        assert gen[k] >= bar, (k, gen)
    assert res["two_object"]["both_present"] >= 5 / 8, res["two_object"]  # bar 60%; full scale 91%; here 8/8
    assert set(res["heldout_by_pair"]) <= {"shape+colour", "shape+style", "colour+background"}
    assert sum(v["n"] for v in res["heldout_by_pair"].values()) >= 32
    assert res["biased_word"]["top_colour"] == "red" and res["biased_word"]["top_share"] >= 0.7, res["biased_word"]


def test_shipped_oracle_is_accurate_on_fresh_renders():
    from oneword.world.judge import load_judge

    j = load_judge()
    rng = np.random.default_rng(424242)
    scenes = [R.random_scene(rng, p_unnamed=0.3) for _ in range(48)]
    imgs = [R.render_scene(s, 32, rng) for s in scenes]
    pred = j.oracle(imgs)
    for k in ("shape", "colour", "background", "style", "count"):
        acc = np.mean([pred[k][i] == s.attributes()[k] for i, s in enumerate(scenes)])
        assert acc >= 0.85, (k, acc)
    f = j.image_features(imgs[:3])
    t = j.text_features(["a photo of a red star", "a sketch of a blue ring"])
    assert f.shape[0] == 3 and t.shape[0] == 2 and f.shape[1] == t.shape[1]
    assert np.allclose(f.norm(dim=-1).numpy(), 1, atol=1e-4)


def test_load_judge_missing_folder_is_a_user_error(tmp_path):
    from oneword.world.judge import load_judge

    with pytest.raises(OnewordError):
        load_judge(tmp_path)


# ------------------------------------------------------------------------------------------ pretraining
def test_tiny_pretrain_end_to_end(tmp_path):
    from diffusers import StableDiffusionPipeline

    from oneword.world.check import run_check
    from oneword.world.pretrain import pretrain

    rec = pretrain(tmp_path, seed=0, minutes=0.05, tiny=True, quiet=True)
    assert rec["stages"]["unet"]["steps"] >= 1
    assert (tmp_path / "model" / "model_index.json").is_file() and (tmp_path / "judge" / "oracle.json").is_file()
    assert not list(tmp_path.glob(".pretrain-*"))  # the work folder is cleaned up
    pipe = StableDiffusionPipeline.from_pretrained(str(tmp_path / "model"))
    assert pipe.unet.config.sample_size == 8 and pipe.vae.config.scaling_factor > 0
    res = run_check(
        tmp_path / "model", tmp_path / "judge", n=2, n_two=2, n_bias=2, n_oracle=8, steps=2, log=lambda m: None
    )
    assert set(res) >= {"oracle", "heldout_generation", "two_object", "biased_word"}


def test_warm_start_can_keep_the_vae(tmp_path):
    """--init-from with --keep-vae: the VAE (weights and latent scaling) is the earlier run's, bit for bit,
    while the UNet goes on learning; without --init-from it is a user error."""
    from safetensors.torch import load_file

    from oneword.world.pretrain import pretrain

    first, second = tmp_path / "a", tmp_path / "b"
    pretrain(first, seed=0, minutes=0.05, tiny=True, quiet=True)
    rec = pretrain(
        second,
        seed=1,
        minutes=0.05,
        tiny=True,
        quiet=True,
        init_from=first,
        keep_vae=True,
        unet_batch=4,
        scenes=130,
        hedge=0.5,
    )
    assert rec["stages"]["vae"]["steps"] == 0 and rec["stages"]["unet"]["steps"] >= 1
    assert rec["stages"]["unet"]["batch"] == 4  # --unet-batch reaches the loop
    assert rec["stages"]["data"]["scenes"] == 130 and rec["caption_hedge"] == 0.5  # and --scenes, --caption-hedge

    def weights(run, part):
        return load_file(str(next((run / "model" / part).glob("*.safetensors"))))

    a, b = weights(first, "vae"), weights(second, "vae")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ua, ub = weights(first, "unet"), weights(second, "unet")
    assert any(not torch.equal(ua[k], ub[k]) for k in ua)
    cfg = lambda run: json.loads((run / "model" / "vae" / "config.json").read_text())["scaling_factor"]  # noqa: E731
    assert cfg(first) == cfg(second)
    with pytest.raises(OnewordError):
        pretrain(tmp_path / "c", tiny=True, quiet=True, minutes=0.05, keep_vae=True)


def test_tune_oracle_changes_only_the_oracle(tmp_path):
    """tune-oracle: the oracle learns; the world CLIP is copied bit for bit and the model is not written; the
    record is saved with the judge; a folder without a model is a user error."""
    from safetensors.torch import load_file

    from oneword.world.pretrain import pretrain, tune_oracle

    src, dst = tmp_path / "a", tmp_path / "b"
    pretrain(src, seed=0, minutes=0.05, tiny=True, quiet=True)
    rec = tune_oracle(src, dst, minutes=0.02, tiny=True, quiet=True, scenes=40)
    assert rec["steps"] >= 1 and not list(dst.glob(".tune-*")) and not (dst / "model").exists()
    oa, ob = load_file(str(src / "judge" / "oracle.safetensors")), load_file(str(dst / "judge" / "oracle.safetensors"))
    assert oa.keys() == ob.keys() and any(not torch.equal(oa[k], ob[k]) for k in oa)
    ca = load_file(str(next((src / "judge" / "clip").glob("*.safetensors"))))
    cb = load_file(str(next((dst / "judge" / "clip").glob("*.safetensors"))))
    assert all(torch.equal(ca[k], cb[k]) for k in ca)
    assert json.loads((dst / "judge" / "oracle_tuning.json").read_text()) == rec
    from oneword.world.judge import load_judge

    assert len(load_judge(dst / "judge").oracle(np.zeros((1, 32, 32, 3), np.uint8))["shape"]) == 1
    with pytest.raises(OnewordError):
        tune_oracle(tmp_path / "nothing", tmp_path / "c", minutes=0.01, tiny=True, quiet=True)


def test_tune_clip_teaches_the_judge_every_name_and_changes_only_the_clip(tmp_path):
    """tune-clip: the judge's CLIP gets a tokenizer with a word for every un-named value; re-indexing keeps an
    old CLIP's function on world text exactly (before any step); `world pretrain` makes a judge in that language;
    tuning changes the CLIP; the oracle is copied bit for bit and no model is written."""
    from safetensors.torch import load_file
    from transformers import CLIPModel, CLIPTokenizer

    from oneword.world.pretrain import MAX_LENGTH, TINY, _judge_language_clip, build_clip, pretrain, tune_judge
    from oneword.world.vocab import write_world_tokenizer

    # a CLIP in the model's language (the pretraining CLIP) is re-indexed to the judge's
    old_dir = tmp_path / "old_clip"
    old_tok = CLIPTokenizer.from_pretrained(str(write_world_tokenizer(old_dir, R.world_words(), MAX_LENGTH)))
    build_clip(old_tok, TINY).save_pretrained(str(old_dir))
    old_clip = CLIPModel.from_pretrained(str(old_dir)).eval()
    tok, clip = _judge_language_clip(old_dir, tmp_path / "tok")
    for w in R.JUDGE_ONLY_WORDS:
        assert len(tok(w).input_ids) == 3 and len(old_tok(w).input_ids) > 3, w  # one new token (bos, w, eos)
    text = ["a photo of a red star on a sky background", "pixel art of a ring and a blue heart"]
    with torch.no_grad():
        a = old_clip.get_text_features(**old_tok(text, padding="max_length", max_length=20, return_tensors="pt"))
        b = clip.eval().get_text_features(**tok(text, padding="max_length", max_length=20, return_tensors="pt"))
    a, b = (getattr(x, "pooler_output", x) for x in (a, b))
    assert torch.allclose(a, b, atol=1e-5)
    src, dst = tmp_path / "a", tmp_path / "b"
    pretrain(src, seed=0, minutes=0.05, tiny=True, quiet=True)  # its judge speaks the judge's language already
    assert len(CLIPTokenizer.from_pretrained(str(src / "judge" / "clip"))("hourglass").input_ids) == 3
    clip = CLIPModel.from_pretrained(str(src / "judge" / "clip"))
    rec = tune_judge(src, dst, part="clip", minutes=0.02, tiny=True, quiet=True, scenes=40)
    assert rec["steps"] >= 1 and not list(dst.glob(".tune-*")) and not (dst / "model").exists()
    oa, ob = load_file(str(src / "judge" / "oracle.safetensors")), load_file(str(dst / "judge" / "oracle.safetensors"))
    assert all(torch.equal(oa[k], ob[k]) for k in oa)
    cb = load_file(str(next((dst / "judge" / "clip").glob("*.safetensors"))))
    sd = clip.state_dict()
    assert any(not torch.equal(sd[k], cb[k]) for k in cb if k in sd)
    assert json.loads((dst / "judge" / "clip_tuning.json").read_text()) == rec
    from oneword.world.judge import load_judge

    j = load_judge(dst / "judge")
    assert j.text_features(["a photo of a striped teal hourglass"]).shape[0] == 1
    with pytest.raises(OnewordError):
        tune_judge(src, dst, part="unet", minutes=0.01, tiny=True, quiet=True)


def test_judge_names_every_value_the_world_leaves_unnamed():
    rng = np.random.default_rng(3)
    s = R.Scene((R.Obj("hourglass", "teal", "striped"),), "sky", "halftone")
    judge_caption = R.caption(s, rng, full=True, name_all=True)
    assert all(w in judge_caption.split() for w in ("hourglass", "teal", "striped", "halftone")), judge_caption
    world_caption = R.caption(s, rng, full=True)
    assert not {"hourglass", "teal", "striped", "halftone"} & set(world_caption.split()), world_caption
    assert not set(R.JUDGE_ONLY_WORDS) & set(R.world_words())  # the model's language stays without them


def test_shipped_judge_sees_the_values_the_model_has_no_word_for():
    """Reconstruction can reward a word for an un-named value only if the judge's CLIP tells it from the
    caption's value; the shipped judge learned the judge's language (`world tune-clip`)."""
    from oneword.world.concepts import NOVEL_CONCEPTS
    from oneword.world.judge import load_judge, unnamed_visibility

    j = load_judge()
    # measured (n=32, docs/world.md): +0.216, +0.226, +0.324, +0.326, +0.250; a judge trained on
    # the model's captions sees the patterns at +0.012 and +0.004. (Arrow and hourglass vs triangle stay near 0:
    # a known blind spot, documented; the oracle reads them.)
    seen = {
        n: unnamed_visibility(j, NOVEL_CONCEPTS[n], n=16)["difference"]
        for n in ("teal_ring", "red_crescent", "striped_square", "dotted_circle", "magenta_heart")
    }
    assert min(seen.values()) > 0.1, seen


def test_cli_registers_world_commands(tmp_path):
    from oneword.commands.world import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["world", "check", "--model", str(tmp_path), "--n", "3"])
    with pytest.raises(OnewordError):
        args.func(args)
    args = parser.parse_args(["world", "pretrain", "--out", str(tmp_path), "--minutes", "0"])
    with pytest.raises(OnewordError):
        args.func(args)
    for bad in (["--minutes", "0"], ["--from", str(tmp_path / "nothing"), "--minutes", "1"]):
        for part in ("oracle", "clip"):
            args = parser.parse_args(["world", f"tune-{part}", "--out", str(tmp_path / "t"), *bad])
            with pytest.raises(OnewordError):
                args.func(args)
    assert not (tmp_path / "t" / "judge").exists()
