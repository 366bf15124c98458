"""Where a word starts: --init auto (words a CLIP judge matches to the photos), --init-mode cross (CrossInit:
the text encoder's output for the init words) and --init encoder (the world model's photo encoder)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from oneword import init_words as I
from oneword.commands import main
from oneword.errors import OnewordError
from oneword.invert import LearnConfig, init_vectors, learn

from conftest import write_photos


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Every test computes its vocabulary features afresh, into its own cache folder."""
    monkeypatch.setenv("ONEWORD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(I, "_MEMORY", {})


@pytest.fixture(scope="module")
def world():
    from oneword import load_model
    from oneword.judges import load_judge

    return load_model(None, device="cpu"), load_judge("world")


def noise(n=5, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(n)]


# ------------------------------------------------------------------------------------------ --init auto
@pytest.mark.parametrize("name,word", [("red_crescent", "red"), ("blue_arrow", "blue"), ("teal_ring", "ring")])
def test_auto_picks_the_word_the_photos_show(world, name, word):
    from oneword.world.concepts import concept

    model, judge = world
    c = concept(name)
    choice = I.auto_words(model, c.photos(5), c.kind, 1, judge=judge)
    assert choice["words"] == [word] and not choice["weak"]
    assert choice["strength_unit"] == "reference" and choice["strength"] > I.WEAK_MATCH_REF


def test_auto_leaves_out_function_words_template_words_and_words_the_model_lacks(world):
    model, judge = world
    words = I.candidate_words(model, judge.judge.tokenizer, "object")
    assert {"red", "ring", "star", "blue"} <= set(words)
    assert not {"the", "of", "photo", "rendering", "a"} & set(words)  # function words; the templates say "photo"
    assert "teal" not in words  # only the judge has it: not a word of the model's tokenizer


def test_auto_on_noise_still_picks_words_and_says_the_match_is_weak(world):
    model, judge = world
    choice = I.auto_words(model, noise(), "object", 2, judge=judge)
    assert len(choice["words"]) == 2 and len(set(choice["words"])) == 2 and choice["weak"]
    assert "WEAK" in I.describe_choice(choice) and f"{choice['strength']:.2f}" in I.describe_choice(choice)


def test_auto_with_n_vectors_starts_each_vector_from_one_of_the_n_best_words(world, tmp_path):
    from oneword.world.concepts import concept

    model, judge = world
    photos = concept("blue_arrow").photos(5)
    cfg = LearnConfig.with_defaults(model, token="<a>", init="auto", vectors=2, steps=1, lr=0.0, early_stop=False)
    learn(model, photos, cfg, tmp_path / "run", progress=False)
    saved = json.loads((tmp_path / "run" / "run.json").read_text())["config"]
    choice = I.auto_words(model, photos, "object", 2, judge=judge)
    assert saved["init"] == " ".join(choice["words"]) and saved["init_choice"]["words"] == choice["words"]
    from oneword import load_concepts

    word = load_concepts(tmp_path / "run" / "learned_embeds.safetensors")[0].vectors
    assert torch.equal(word, init_vectors(model, " ".join(choice["words"]), 2))  # lr 0: the start itself
    assert not torch.equal(word[0], word[1])


def test_auto_ranks_a_real_clips_vocabulary_batched_and_cached(tiny_model, tiny_clip_dir, monkeypatch):
    from oneword.judges import load_judge

    judge = load_judge(str(tiny_clip_dir))
    images = [Image.new("RGB", (32, 32), (200, 30, 30))] * 2
    choice = I.auto_words(tiny_model, images, "object", 2, judge=judge)
    assert choice["candidates"] > 20000 and choice["strength_unit"] == "vocabulary"
    tok = tiny_model.tokenizer
    assert all(len(tok(w, add_special_tokens=False).input_ids) == 1 for w in choice["words"])
    # the same ranking from the disk cache alone: no text is encoded again
    monkeypatch.setattr(I, "_MEMORY", {})
    monkeypatch.setattr(I, "_text_features", lambda *a: pytest.fail("text features recomputed"))
    assert I.auto_words(tiny_model, images, "object", 2, judge=judge)["words"] == choice["words"]


def test_a_real_clips_text_features_padded_to_the_longest_equal_padding_to_77(tiny_clip_dir):
    from oneword.judges import load_judge

    judge = load_judge(str(tiny_clip_dir))
    texts = ["a photo of a cat", "a photo of a very long and winding river", "a photo of a x"]
    assert torch.allclose(I._text_features(judge, texts), judge.text_features(texts), atol=1e-5)


def test_auto_without_a_judge_for_a_real_model_says_what_to_pass(tiny_model, tmp_path):
    cfg = LearnConfig(token="<a>", init="auto", steps=1)
    with pytest.raises(OnewordError, match="--clip MODEL"):
        learn(tiny_model, write_photos(tmp_path / "p"), cfg, tmp_path / "run", progress=False)


def test_cli_init_auto_prints_the_words_and_records_them(tiny_dir, tiny_clip_dir, tmp_path, capsys):
    photos = write_photos(tmp_path / "p")

    def learn_auto(out, *extra):
        argv = ["learn", photos, "--token", "<r>", "--model", tiny_dir, "--init", "auto", "--out", out, "--steps", "2"]
        return main([str(a) for a in (*argv, *extra, "--quiet")])

    code = learn_auto(tmp_path / "run", "--clip", tiny_clip_dir, "--batch-size", "2")
    out = capsys.readouterr().out
    saved = json.loads((tmp_path / "run" / "run.json").read_text())["config"]
    assert code == 0 and f"init auto: {saved['init']} (" in out and "match strength" in out
    assert saved["init_choice"]["method"] == "auto" and saved["init_clip"] == str(tiny_clip_dir)

    code = learn_auto(tmp_path / "run2")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--clip MODEL" in err[0]


# ------------------------------------------------------------------------------------------ --init-mode cross
def test_cross_start_is_the_text_encoders_final_hidden_state_of_the_init_words(world):
    model, _ = world
    tok, te = model.tokenizer, model.pipe.text_encoder
    ids = tok("blue ring").input_ids  # [start, blue, ring, end]
    assert len(ids) == 4
    hidden = te(torch.tensor([ids])).last_hidden_state[0].detach()
    v2 = I.cross_vectors(model, "blue ring", 2)
    assert torch.allclose(v2, hidden[1:3], atol=1e-6)  # vector i from word i
    assert torch.allclose(I.cross_vectors(model, "blue ring", 1)[0], hidden[1:3].mean(0), atol=1e-6)
    one = te(torch.tensor([tok("ring").input_ids])).last_hidden_state[0, 1].detach()
    assert torch.allclose(I.cross_vectors(model, "ring", 3), one.expand(3, -1), atol=1e-6)
    assert not torch.allclose(one, init_vectors(model, "ring", 1)[0], atol=1e-2)  # not the input embedding


def test_learn_in_cross_mode_starts_there_with_crossinits_pull(world, tmp_path):
    from oneword import load_concepts
    from oneword.world.concepts import concept

    model, _ = world
    cfg = LearnConfig.with_defaults(
        model, token="<c>", init="ring", init_mode="cross", steps=1, lr=0.0, early_stop=False
    )
    learn(model, concept("teal_ring").photos(3), cfg, tmp_path / "run", progress=False)
    saved = json.loads((tmp_path / "run" / "run.json").read_text())["config"]
    assert saved["reg_weight"] == I.CROSS_REG_WEIGHT == 1e-5 and saved["init_choice"]["mode"] == "cross"
    word = load_concepts(tmp_path / "run" / "learned_embeds.safetensors")[0].vectors
    assert torch.equal(word, I.cross_vectors(model, "ring", 1))
    # an explicit --reg-weight is kept
    cfg = LearnConfig.with_defaults(model, token="<c>", init="ring", init_mode="cross", steps=1, reg_weight=0.5)
    assert I.start(model, cfg, None)[0].reg_weight == 0.5


def test_unknown_init_mode_is_refused(tiny_model):
    with pytest.raises(OnewordError, match="--init-mode"):
        I.start(tiny_model, LearnConfig(init="cat", init_mode="output"), None)


# ------------------------------------------------------------------------------------------ --init encoder
def untrained_encoder(model, path, fingerprint=None):
    """An encoder whose last layer is still zero (it gives the default init word), saved for `model` (or for a
    model with another fingerprint)."""
    from types import SimpleNamespace

    from oneword import photo_encoder as W
    from oneword.judges import load_judge

    table = model.pipe.text_encoder.get_input_embeddings().weight.detach()
    base = torch.stack(
        [table[model.tokenizer(w, add_special_tokens=False).input_ids].mean(0) for w in ("object", "painting")]
    )
    enc = W.PhotoEncoder(64, table.shape[1], base, hidden=16)
    owner = SimpleNamespace(identity={"fingerprint": fingerprint}) if fingerprint else model
    W.save_encoder(enc, path, owner, load_judge("world"), {"steps": 0})
    return path


def test_an_untrained_encoder_gives_the_default_init_word(world, tmp_path):
    from oneword.photo_encoder import encoder_vectors
    from oneword.world.concepts import concept

    model, _ = world
    path = untrained_encoder(model, tmp_path / "enc.safetensors")
    v, record = encoder_vectors(model, concept("teal_ring").photos(3), "object", 2, path=path)
    assert torch.allclose(v, init_vectors(model, "object", 2), atol=1e-6) and record["method"] == "encoder"
    v, _ = encoder_vectors(model, concept("style_hatched").photos(3), "style", 1, path=path)
    assert torch.allclose(v, init_vectors(model, "painting", 1), atol=1e-6)


def test_an_encoder_for_another_model_is_refused_by_fingerprint(world, tmp_path):
    from oneword.photo_encoder import load_encoder

    model, _ = world
    path = untrained_encoder(model, tmp_path / "other.safetensors", fingerprint="0123456789abcdef")
    with pytest.raises(OnewordError, match="belongs to model 0123456789abcdef, not this one"):
        load_encoder(path, model)
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(OnewordError, match="not a oneword photo encoder"):
        load_encoder(tmp_path / "junk.safetensors", model)


def test_the_shipped_encoder_belongs_to_the_world_model_fits_5_mb_and_reads_the_photos(world):
    from oneword.photo_encoder import encoder_vectors
    from oneword.world import encoder_path
    from oneword.world.concepts import concept

    model, _ = world
    assert encoder_path().stat().st_size <= 5 * 2**20
    red, _ = encoder_vectors(model, concept("red_crescent").photos(5), "object", 1)
    blue, record = encoder_vectors(model, concept("blue_arrow").photos(5), "object", 1)
    assert record["model_fingerprint"] == model.identity["fingerprint"]
    assert not torch.allclose(red, blue, atol=1e-3) and not torch.allclose(red, init_vectors(model, "object", 1))


def test_cli_init_encoder_starts_from_the_encoders_word(world, tmp_path, capsys):
    from oneword import load_concepts
    from oneword.photo_encoder import encoder_vectors
    from oneword.world.concepts import concept

    model, _ = world
    photos = tmp_path / "p"
    photos.mkdir()
    for i, im in enumerate(concept("teal_ring").photos(4)):
        im.save(photos / f"{i}.png")

    def learn_encoder(out, *extra):  # on the world model
        argv = ["learn", photos, "--token", "<e>", "--init", "encoder", "--out", out, "--steps", "1", *extra]
        return main([str(a) for a in (*argv, "--quiet")])

    code = learn_encoder(tmp_path / "run", "--lr", "0", "--no-early-stop")
    assert code == 0 and "photo encoder" in capsys.readouterr().out
    saved = json.loads((tmp_path / "run" / "run.json").read_text())["config"]
    assert saved["init_choice"]["method"] == "encoder"
    word = load_concepts(tmp_path / "run" / "learned_embeds.safetensors")[0].vectors
    from oneword.data import read_photos

    assert torch.allclose(word, encoder_vectors(model, read_photos(photos), "object", 1)[0], atol=1e-6)
    code = learn_encoder(tmp_path / "run2", "--init-mode", "cross")
    assert code == 2 and "cannot be combined" in capsys.readouterr().err


def test_learn_many_starts_each_word_where_learn_would(world, tmp_path):
    from oneword import load_concepts
    from oneword.data import read_photos
    from oneword.many import Job, learn_many
    from oneword.world.concepts import concept

    model, judge = world
    jobs = []
    for name, init in (("teal_ring", "encoder"), ("blue_arrow", "auto"), ("lime_star", "star")):
        folder = tmp_path / name
        folder.mkdir()
        for i, im in enumerate(concept(name).photos(3)):
            im.save(folder / f"{i}.png")
        jobs.append(Job(token=f"<{name}>", photos=str(folder), out=str(tmp_path / "out" / name), init=init))
    rows = learn_many(model, jobs, tmp_path / "out", progress=False, steps=1, lr=0.0, early_stop=False)
    assert [r["status"] for r in rows] == ["done"] * 3

    def word(name):  # lr 0: the start itself
        return load_concepts(tmp_path / "out" / name / "learned_embeds.safetensors")[0].vectors

    def saved(name):
        return json.loads((tmp_path / "out" / name / "run.json").read_text())["config"]

    ring = read_photos(jobs[0].photos)
    assert torch.allclose(word("teal_ring"), I.start(model, LearnConfig(init="encoder"), ring)[1], atol=1e-6)
    assert saved("teal_ring")["init_choice"]["method"] == "encoder"
    choice = I.auto_words(model, read_photos(jobs[1].photos), "object", 1, judge=judge)
    assert saved("blue_arrow")["init_choice"]["words"] == choice["words"]
    assert torch.equal(word("blue_arrow"), init_vectors(model, " ".join(choice["words"]), 1))
    assert torch.equal(word("lime_star"), init_vectors(model, "star", 1))

    cross = [Job(token="<x>", photos=jobs[2].photos, out=str(tmp_path / "cross"))]
    rows = learn_many(model, cross, tmp_path / "c", progress=False, steps=1, init_mode="cross")
    assert rows[0]["status"] == "failed" and "cannot learn --init-mode cross" in rows[0]["error"]


def frozen_weights(model) -> dict:
    parts = {"unet": model.unet, **{e.part: e.text_encoder for e in model.family.encoders(model.pipe)}}
    return {f"{n}.{k}": v.clone() for n, m in parts.items() for k, v in m.state_dict().items()}


def test_an_encoder_for_a_real_model_trains_only_itself_and_learn_starts_from_it(
    tiny_dir, tiny_clip_dir, tmp_path, capsys
):
    from oneword import load_concepts, load_model
    from oneword.data import read_photos
    from oneword.encoder_training import train_photo_encoder
    from oneword.judges import load_judge
    from oneword.photo_encoder import encoder_vectors, load_encoder

    subjects = tmp_path / "subjects"
    sets = [read_photos(write_photos(subjects / f"s{i}", n=2 + i, seed=i)) for i in range(3)]
    (subjects / "s2" / "oneword.toml").write_text('property = "style"\n')
    model = load_model(str(tiny_dir), device="cpu")
    frozen = frozen_weights(model)
    path = tmp_path / "api.safetensors"
    judge = load_judge(str(tiny_clip_dir))
    rec = train_photo_encoder(
        model, judge, sets, [0, 0, 1], path, str(tiny_clip_dir), max_steps=3, batch=2, hidden=16, log=lambda m: None
    )
    assert rec["steps"] == 3 and rec["photos_per_subject"] == [2, 4] and np.isfinite(rec["loss_last_50"])
    assert all(torch.equal(v, frozen[k]) for k, v in frozen_weights(model).items())  # only the encoder learned
    enc, meta = load_encoder(path, model)
    assert enc.net[-1].weight.abs().sum() > 0 and meta["judge_source"] == str(tiny_clip_dir)
    with pytest.raises(OnewordError, match="another judge"):
        encoder_vectors(model, sets[0], "object", 1, path=path, judge=load_judge("world"))

    out = tmp_path / "enc.safetensors"
    argv = [str(a) for a in ("train-encoder", subjects, "--model", tiny_dir, "--out", out, "--steps", "2")]
    assert main([*argv, "--batch", "2", "--clip", str(tiny_clip_dir)]) == 0
    assert f"--init encoder:{out}" in capsys.readouterr().out
    written = out.read_bytes()
    one_line = lambda: capsys.readouterr().err.strip().splitlines()  # noqa: E731
    assert main([*argv, "--clip", str(tiny_clip_dir)]) == 2 and "already exists" in one_line()[0]
    assert main([*argv, "--overwrite"]) == 2 and "needs --clip MODEL" in one_line()[0]
    assert out.read_bytes() == written

    def learn_from(init, run):
        argv = ["learn", subjects / "s0", "--token", "<e>", "--model", tiny_dir, "--init", init, "--out", run]
        extra = ["--steps", "1", "--lr", "0", "--no-early-stop", "--batch-size", "2", "--quiet"]
        return main([str(a) for a in (*argv, *extra)])

    assert learn_from(f"encoder:{out}", tmp_path / "run") == 0  # its CLIP found where the file says it lies
    word = load_concepts(tmp_path / "run" / "learned_embeds.safetensors")[0].vectors
    assert torch.allclose(word, encoder_vectors(model, sets[0], "object", 1, path=out)[0], atol=1e-6)
    assert not torch.allclose(word, init_vectors(model, "object", 1), atol=1e-6)
    assert learn_from("encoder", tmp_path / "run2") == 2 and "no photo encoder ships" in one_line()[0]


def test_encoder_training_never_sees_a_novel_concept_and_writes_a_loadable_encoder(world, tmp_path):
    from oneword.photo_encoder import MAX_NORM, load_encoder
    from oneword.world.concepts import NOVEL_CONCEPTS, pretraining_exclusions
    from oneword.world.encoder import concept_sets, train_encoder
    from oneword.world.render import UNNAMED_STYLES

    model, judge = world
    _, props, specs = concept_sets(60, 8, 2, seed=1)
    assert props.count(1) == 8 and not set(specs) & pretraining_exclusions()
    assert not {(s,) for s in UNNAMED_STYLES} & set(specs)  # the un-named styles are the novel style concepts
    assert {c.attributes.get("style") for c in NOVEL_CONCEPTS.values() if c.kind == "style"} <= set(UNNAMED_STYLES)
    rec = train_encoder(
        tmp_path / "e.safetensors",
        minutes=1,
        max_steps=2,
        batch=4,
        n_object=6,
        n_style=2,
        photos=2,
        log=lambda m: None,
        model=model,
        judge=judge,
    )
    assert rec["steps"] == 2 and np.isfinite(rec["loss_last_50"])
    enc, meta = load_encoder(tmp_path / "e.safetensors", model)
    assert meta["model_fingerprint"] == model.identity["fingerprint"]
    assert enc.max_norm == rec["max_norm"] == MAX_NORM


def test_the_encoders_words_are_no_longer_than_learned_words_so_learning_can_turn_them(world, tmp_path):
    """Left free, an encoder pushes its words to norms of 150-200 (they drown the position embedding), where
    AdamW's steps barely turn them; its words are scaled down to at most max_norm, on the shipped file too."""
    from oneword import photo_encoder as W
    from oneword.world import encoder_path
    from oneword.world.concepts import concept

    model, _ = world
    shipped, _ = W.load_encoder(encoder_path(), model)
    assert shipped.max_norm == W.MAX_NORM
    path = untrained_encoder(model, tmp_path / "enc.safetensors")
    enc, _ = W.load_encoder(path, model)
    with torch.no_grad():
        enc.net[-1].bias.fill_(100.0)  # an offset of norm ~1100
    feats = torch.randn(3, 64)
    prop = torch.tensor([0, 1, 0])
    enc.max_norm = None
    assert (enc(feats, prop).norm(dim=-1) > 1000).all()
    enc.max_norm = W.MAX_NORM
    words = enc(feats, prop)
    assert torch.allclose(words.norm(dim=-1), torch.full((3,), W.MAX_NORM))
    v, _ = W.encoder_vectors(model, concept("teal_ring").photos(5), "object", 1)
    assert 0 < v.norm() <= W.MAX_NORM + 1e-4
