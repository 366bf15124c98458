"""oneword.evaluation: the paper's metrics computed as defined, their intervals, the judges and the command."""

import json
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from oneword import evaluation as E
from oneword.concept import Concept
from oneword.errors import OnewordError
from oneword.install import expand_prompt


class PixelJudge:
    """A deterministic stand-in for CLIP: image features are the centred 8x8 pixels; a text's features
    depend on its content: the image features of a plain picture in the colour the text names ("red",
    "blue", ...), else a random direction seeded by the text itself. Records every text it is asked to encode."""

    name = "pixels"
    COLOURS = {"red": (255, 0, 0), "blue": (0, 0, 255), "green": (0, 255, 0), "yellow": (255, 255, 0)}

    def __init__(self):
        self.texts = []

    def image_features(self, images):
        x = (
            torch.stack(
                [
                    torch.from_numpy(np.asarray(im.convert("RGB").resize((8, 8)), dtype=np.float32).ravel())
                    for im in images
                ]
            )
            / 255
            - 0.5
        )
        return F.normalize(x, dim=-1)

    def text_features(self, texts):
        self.texts += list(texts)
        return torch.cat([self._text(t) for t in texts])

    def _text(self, text):
        named = [c for c in self.COLOURS if c in text.split()]
        if named:
            return self.image_features([Image.new("RGB", (8, 8), self.COLOURS[named[0]])])
        g = torch.Generator().manual_seed(zlib.crc32(text.encode()))
        return F.normalize(torch.randn(1, 192, generator=g), dim=-1)


def ring_photos(n=4, seed=0, size=32):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        im = Image.new("RGB", (size, size), (240, 240, 240))
        from PIL import ImageDraw

        x, y = rng.integers(2, 10, 2)
        ImageDraw.Draw(im).ellipse([x, y, x + 20, y + 20], outline=(0, 128, 128), width=4)
        out.append(im)
    return out


def noise_images(n=4, seed=1, size=32):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def fixed_sampler(images):
    """A stand-in for sampling that returns the given images (cycled) for every prompt."""

    def fake(model, prompt, concepts=(), n=1, **kw):
        return [images[i % len(images)] for i in range(n)]

    return fake


QUICK = E.EvalConfig(n=4, steps=2, bootstrap=200)


# ------------------------------------------------------------------------------------------ reconstruction
def test_a_generated_set_identical_to_the_photos_scores_the_maximum(tiny_model, monkeypatch):
    judge, photos = PixelJudge(), ring_photos(1)
    monkeypatch.setattr(E, "sample", fixed_sampler(photos))  # every sample is the training photo itself
    ev = E.Evaluator(tiny_model, photos, judge, config=QUICK)
    r = ev.evaluate(E.captioned("a ring"))
    assert r["reconstruction"]["mean"] == pytest.approx(1.0, abs=1e-6)  # the cosine's maximum
    assert r["reconstruction"]["ci"] == pytest.approx([1.0, 1.0], abs=1e-6)

    monkeypatch.setattr(E, "sample", fixed_sampler(noise_images()))
    assert ev.evaluate(E.captioned("a ring"))["reconstruction"]["mean"] < 0.5


def test_reconstruction_is_the_mean_pairwise_cosine_and_the_photos_beat_unrelated_sets(tiny_model, monkeypatch):
    judge, photos = PixelJudge(), ring_photos(4)
    feats = judge.image_features(photos)
    ev = E.Evaluator(tiny_model, photos, judge, config=QUICK)

    monkeypatch.setattr(E, "sample", fixed_sampler(photos))
    same = ev.evaluate(E.captioned("a ring"))["reconstruction"]["mean"]
    assert same == pytest.approx(float((feats @ feats.T).mean()), abs=1e-6)  # the official definition
    for unrelated in (noise_images(), ring_photos(4, seed=5)[:0] + [Image.new("RGB", (32, 32), (20, 20, 200))] * 4):
        monkeypatch.setattr(E, "sample", fixed_sampler(unrelated))
        assert ev.evaluate(E.captioned("a ring"))["reconstruction"]["mean"] < same
    # distinct photos of the concept: what a perfect fresh sample scores (reported as the ceiling)
    assert ev.ceiling == pytest.approx(float(((feats @ feats.T).sum() - 4) / 12), abs=1e-6)
    assert E.reconstruction_scores(feats, feats).max() <= 1.0 + 1e-6


# ------------------------------------------------------------------------------------------ editability
def test_editability_strips_the_placeholder_and_its_vector_tokens_before_encoding(tiny_model):
    judge = PixelJudge()
    word = Concept("<spy>", torch.randn(3, tiny_model.hidden_size) * 0.01, {"property": "object"})
    cfg = E.EvalConfig(n=1, steps=1, bootstrap=50)
    ev = E.Evaluator(tiny_model, ring_photos(2), judge, config=cfg)
    learned = ev.evaluate(E.learned(word))
    assert judge.texts, "edit prompts were encoded"
    for t in judge.texts:
        assert "<spy" not in t and "S*" not in t and "  " not in t
    assert "a photo of on the moon" in judge.texts and "Elmo holding a" in judge.texts
    # the samples themselves were drawn with the word (expanded to its 3 vector tokens)
    assert learned["prompts"][1]["prompt"] == "a photo of <spy> on the moon"
    assert expand_prompt("a photo of <spy> on the moon", [word]) == "a photo of <spy> <spy>_1 <spy>_2 on the moon"
    # a caption is scored against the very same texts
    before = list(judge.texts)
    cap = ev.evaluate(E.captioned("a small teal ring"))
    assert [p["text"] for p in cap["prompts"][1:]] == [p["text"] for p in learned["prompts"][1:]]
    assert cap["prompts"][1]["prompt"] == "a photo of a small teal ring on the moon"
    assert cap["prompts"][-3]["prompt"] == "Elmo holding a small teal ring"  # no "a a"
    assert len(judge.texts) == len(before) == len(set(before))  # each text encoded once


def test_editability_is_the_mean_cosine_between_each_edit_text_and_its_samples(tiny_model, monkeypatch):
    """The paper's second metric, numerically: samples that show what an edit text says score high against it.
    Every sample is a plain red picture; against "in red" each scores cos = 1, against "in blue" -1/3 (the
    centred pixels of red and blue), so editability, the mean over the edit prompts, is exactly 1/3."""
    red = [Image.new("RGB", (32, 32), (255, 0, 0))] * 4
    monkeypatch.setattr(E, "sample", fixed_sampler(red))
    judge = PixelJudge()
    ev = E.Evaluator(
        tiny_model, ring_photos(2), judge, prompts=E.custom_prompts(["S* in red", "S* in blue"], "object"), config=QUICK
    )
    r = ev.evaluate(E.captioned("a ring"))
    by_text = {p["text"]: p for p in r["prompts"][1:]}
    assert set(by_text) == {"in red", "in blue"}
    assert by_text["in red"]["samples"] == pytest.approx([1.0] * 4, abs=1e-6)
    assert by_text["in blue"]["samples"] == pytest.approx([-1 / 3] * 4, abs=1e-6)
    assert r["editability"]["mean"] == pytest.approx(1 / 3, abs=1e-6)
    # any text: each sample's score is its cosine with the text's features
    images = ring_photos(4, seed=2)
    monkeypatch.setattr(E, "sample", fixed_sampler(images))
    r = E.Evaluator(tiny_model, ring_photos(2), judge, config=QUICK).evaluate(E.captioned("a ring"))
    feats, means = judge.image_features(images), []
    for row in r["prompts"][1:]:
        want = (feats @ judge.text_features([row["text"]])[0]).double().numpy()
        assert row["samples"] == pytest.approx(want.tolist(), abs=1e-5)
        means.append(want.mean())
    assert len({round(m, 5) for m in means}) == len(means)  # different texts, different scores
    assert r["editability"]["mean"] == pytest.approx(float(np.mean(means)), abs=1e-5)


def test_strip_placeholder():
    assert E.strip_placeholder("a photo of <c> <c>_1 <c>_2 on the moon", "<c>", 3) == "a photo of on the moon"
    assert E.strip_placeholder("a photo of <c> <c>_1 <c>_2 on the moon", "<c>") == "a photo of on the moon"
    assert E.strip_placeholder("S* in the style of S*_1", "S*") == "in the style of"
    assert E.strip_placeholder("a <c>-like <cat> photo", "<c>") == "a <c>-like <cat> photo"  # whole tokens only


def test_learned_words_reach_the_text_encoder_and_leave_the_model_untouched(tiny_model):
    from oneword.sampling import encode_text

    vocab, emb = len(tiny_model.tokenizer), tiny_model.text_encoder.get_input_embeddings()
    a = Concept("<w>", torch.zeros(2, tiny_model.hidden_size), {})
    b = Concept("<w>", torch.ones(2, tiny_model.hidden_size), {})
    with torch.no_grad():
        with E.temporary_words(tiny_model, [a]) as tok:
            ea = encode_text(tiny_model, tok, [expand_prompt("a photo of <w>", [a])])
        with E.temporary_words(tiny_model, [b]) as tok:
            eb = encode_text(tiny_model, tok, [expand_prompt("a photo of <w>", [b])])
    assert not torch.allclose(ea, eb)
    assert len(tiny_model.tokenizer) == vocab and tiny_model.text_encoder.get_input_embeddings() is emb
    with pytest.raises(OnewordError, match="wide"):
        with E.temporary_words(tiny_model, [Concept("<x>", torch.zeros(1, 7), {})]):
            pass


def test_caption_and_prompt_sets():
    p = E.EvalPrompt("elmo", "composition", "Elmo holding a {}")
    assert p.fill("<c>") == "Elmo holding a <c>"
    assert p.fill("a small teal ring", caption=True) == "Elmo holding a small teal ring"
    assert p.fill("teal rings", caption=True) == "Elmo holding a teal rings"
    assert [q.group for q in E.paper_prompts("object")][:2] == ["reconstruction", "background"]
    assert {q.group for q in E.paper_prompts("object")} == {"reconstruction", "background", "style", "composition"}
    with pytest.raises(OnewordError, match="S\\*"):
        E.custom_prompts(["a photo on the moon"], "object")
    assert E.custom_prompts(["S* in a basket"], "object")[1].fill("<c>") == "<c> in a basket"


def test_world_prompts_use_only_world_words_and_fit_its_tokens_with_8_vectors():
    from oneword.world.render import world_words

    words = set(world_words())
    for kind in ("object", "style"):
        prompts = E.world_prompts(kind, {"shape": "star"})
        assert prompts[0].group == "reconstruction"
        for p in prompts:
            for text in (p.fill("S*"), p.fill("a blue ring", caption=True)):
                assert set(text.replace("S*", "").split()) <= words, text
            assert len(p.fill("S*").split()) + 7 + 2 <= 20  # 8 vector tokens, BOS, EOS in 20 tokens
        if kind == "object":
            assert all(p.expect.get("second", ("",))[0] != "star" for p in prompts)  # never the concept's own shape


# ------------------------------------------------------------------------------------------ oracle
def test_oracle_presence_and_edit_checks():
    labels = {
        "shape": ["ring", "ring", "star", "star"],
        "colour": ["teal", "teal", "yellow", "teal"],
        "pattern": ["solid", "striped", "solid", "solid"],
        "count": ["1", "1", "2", "2"],
        "shape2": ["none", "none", "ring", "ring"],
        "colour2": ["none", "none", "teal", "red"],
        "background": ["sky", "grass", "sky", "sky"],
        "style": ["photo", "sketch", "photo", "photo"],
    }
    target = {"shape": "ring", "colour": "teal", "pattern": "solid"}
    assert E.concept_present(labels, target, "object").tolist() == [1, 0, 1, 0]
    assert E.concept_present(labels, {"style": "sketch"}, "style").tolist() == [0, 1, 0, 0]
    assert E.edit_applied(labels, {"background": "sky"}).tolist() == [1, 0, 1, 1]
    assert E.edit_applied(labels, {"second": ("star", "yellow")}).tolist() == [0, 0, 1, 0]
    assert E.edit_applied(labels, {}) is None
    assert (
        E.target_attributes(
            {"shape": ["ring", "ring", "star"], "colour": ["teal"] * 3, "pattern": ["solid"] * 3}, "object"
        )
        == target
    )


def test_evaluator_with_an_oracle_reports_presence_and_edits(tiny_model, monkeypatch):
    class OracleJudge(PixelJudge):
        def oracle(self, images):
            n = len(images)
            return {
                "shape": ["ring"] * n,
                "colour": ["teal"] * n,
                "pattern": ["solid"] * n,
                "count": ["1"] * n,
                "shape2": ["none"] * n,
                "colour2": ["none"] * n,
                "background": ["sky"] * n,
                "style": ["photo"] * n,
            }

    monkeypatch.setattr(E, "sample", fixed_sampler(ring_photos(2)))
    ev = E.Evaluator(tiny_model, ring_photos(2), OracleJudge(), prompts="world", config=QUICK)
    assert ev.attributes == {"shape": "ring", "colour": "teal", "pattern": "solid"}
    r = ev.evaluate(E.captioned("a blue ring"))
    assert r["present_reconstruction"]["mean"] == 1.0
    by_name = {p["name"]: p for p in r["prompts"]}
    assert by_name["on sky"]["edit_applied"]["mean"] == 1.0 and by_name["on black"]["edit_applied"]["mean"] == 0.0
    assert 0 < r["edit_applied"]["mean"] < 1


# ------------------------------------------------------------------------------------------ statistics
def test_bootstrap_interval_contains_the_mean_and_narrows_with_more_samples():
    rng = np.random.default_rng(0)
    small, large = rng.normal(0.5, 0.1, 16), rng.normal(0.5, 0.1, 1024)
    s, l = E.summary(small), E.summary(large)
    for x, v in ((s, small), (l, large)):
        assert x["ci"][0] <= x["mean"] <= x["ci"][1] and x["mean"] == pytest.approx(v.mean())
    assert (l["ci"][1] - l["ci"][0]) < 0.25 * (s["ci"][1] - s["ci"][0])
    assert E.summary(small, seed=3) == E.summary(small, seed=3)  # fixed seeds: reproducible
    # stratified: groups weigh equally whatever their size
    g = E.summary([[1.0, 1.0, 1.0, 1.0], [0.0]])
    assert g["mean"] == 0.5 and g["ci"] == [0.5, 0.5] and g["n"] == 5
    # paired differences see a shift the unpaired interval cannot
    base = rng.normal(0, 1, 64)
    d = E.difference((base + 0.05).tolist(), base.tolist())
    assert d["paired"] and d["ci"][0] > 0 and d["mean"] == pytest.approx(0.05)
    assert E.difference((base + 0.05).tolist(), base.tolist(), paired=False)["ci"][0] < 0
    assert E.entropy_bits(["red"] * 8) == 0 and E.entropy_bits(list("abcdefgh")) == pytest.approx(3.0)


def test_same_seed_same_scores(tiny_model):
    judge, word = PixelJudge(), Concept("<s>", torch.randn(1, tiny_model.hidden_size), {})
    cfg = E.EvalConfig(n=2, steps=2, bootstrap=50)
    a = E.evaluate(tiny_model, ring_photos(2), [word], judge, config=cfg)
    b = E.evaluate(tiny_model, ring_photos(2), [word], judge, config=cfg)
    c = E.evaluate(tiny_model, ring_photos(2), [word], judge, config=E.EvalConfig(n=2, steps=2, bootstrap=50, seed=1))
    key = lambda r: [p["samples"] for p in r["results"][0]["prompts"]]  # noqa: E731
    assert key(a) == key(b) and key(a) != key(c)


# ------------------------------------------------------------------------------------------ judges and CLI
def test_cli_writes_table_json_and_grid(tiny_dir, tiny_clip_dir, photos, tmp_path, capsys):
    from oneword.commands import main
    from oneword.formats import save_concept

    emb = tmp_path / "run" / "learned_embeds.safetensors"
    emb.parent.mkdir()
    save_concept(Concept("<teal-ring>", torch.randn(2, 32) * 0.01, {"property": "object"}), emb)
    out = tmp_path / "eval"
    rc = main(
        [
            "evaluate",
            "--embeds",
            str(emb),
            "--images",
            str(photos),
            "--model",
            str(tiny_dir),
            "--device",
            "cpu",
            "--judge",
            str(tiny_clip_dir),
            "-n",
            "2",
            "--steps",
            "2",
            "--caption",
            "a teal ring",
            "--bootstrap",
            "100",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "reconstruction" in printed and "<teal-ring>" in printed and '"a teal ring"' in printed
    report = json.loads((out / "evaluation.json").read_text())
    assert report["config"]["n"] == 2 and report["config"]["steps"] == 2 and report["config"]["guidance"] == 5.0
    assert [r["kind"] for r in report["results"]] == ["learned", "caption"]
    assert report["results"][0]["vectors"] == 2
    assert len(report["results"][0]["prompts"][0]["samples"]) == 2
    assert (out / "table.txt").read_text().startswith("subject")
    grid = Image.open(out / "samples.png")
    assert grid.size[1] > grid.size[0]  # one row per prompt, 2 samples each
    assert (out / "samples_1.png").is_file()


def test_cli_defaults_are_the_papers(tiny_dir):
    from oneword.commands import build_parser

    args = build_parser().parse_args(["evaluate", "--embeds", "x", "--images", "y"])
    assert (args.num, args.steps, args.guidance, args.scheduler) == (64, 50, 5.0, "ddim")


def test_bad_judges_give_one_line_errors(tmp_path, tiny_dir, photos, capsys):
    from oneword.commands import main

    empty = tmp_path / "not-a-clip"
    empty.mkdir()
    for spec, match in (
        (empty, "cannot load a CLIP judge"),
        (tmp_path / "missing", "not a folder"),
        ("nobody/clip-that-is-not-cached", "not in the local Hugging Face cache"),
    ):
        with pytest.raises(OnewordError, match=match) as e:
            E.load_judge(str(spec))
        assert "\n" not in str(e.value)
    rc = main(
        [
            "evaluate",
            "--caption",
            "a ring",
            "--images",
            str(photos),
            "--model",
            str(tiny_dir),
            "--device",
            "cpu",
            "--judge",
            str(empty),
            "-n",
            "1",
            "--steps",
            "1",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert main(["evaluate", "--images", str(photos)]) == 2  # neither --embeds nor --caption


# ------------------------------------------------------------------------------------------ the world
def test_world_learned_word_reconstructs_better_than_the_generic_caption(tmp_path):
    from oneword.invert import LearnConfig, learn
    from oneword.models import load_model
    from oneword.world.concepts import HELD_OUT, NOVEL_CONCEPTS

    # red_crescent: its shape has no word; measured +0.358 [+0.291, +0.417] with the judge-language CLIP.
    name = "red_crescent"
    assert name not in HELD_OUT
    c = NOVEL_CONCEPTS[name]
    model = load_model(None, device="cpu")
    photos = c.photos(5, seed=0)
    cfg = LearnConfig.with_defaults(
        model, token="<red-crescent>", init=c.init_word, steps=150, early_stop=False, save_every=10**6, seed=0
    )
    word = learn(model, photos, cfg, tmp_path / "run", progress=False)
    judge = E.load_judge(None, model)
    ev = E.Evaluator(
        model, photos, judge, c.kind, [E.world_prompts(c.kind)[0]], E.EvalConfig(n=16, steps=10, bootstrap=500)
    )
    ti, generic = ev.evaluate(E.learned(word)), ev.evaluate(E.captioned("an object"))
    d = E.difference(ti["prompts"][0]["samples"], generic["prompts"][0]["samples"])
    assert d["ci"][0] > 0, (ti["reconstruction"], generic["reconstruction"])
