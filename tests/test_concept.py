"""The learned word in every format: exact round trips, diffusers compatibility, validation, safety."""

import argparse
import io
import json
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest
import safetensors.torch
import torch
from PIL import Image

from oneword.concept import Concept, vector_token_names
from oneword.errors import OnewordError
from oneword.formats import a1111_image_bytes, describe, load_concepts, save_concept
from oneword.install import expand_prompt, install_concepts

W = 32  # text width of the tiny pipeline


def _pipe(tiny_dir):
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    dlog.set_verbosity_error()
    dlog.disable_progress_bar()
    tlog.set_verbosity_error()
    return StableDiffusionPipeline.from_pretrained(tiny_dir, safety_checker=None, requires_safety_checker=False)


@pytest.fixture
def pipe(tiny_dir):
    return _pipe(tiny_dir)


def concept(n=3, dim=W, token="<my-cat>", seed=0):
    g = torch.Generator().manual_seed(seed)
    return Concept(token, torch.randn(n, dim, generator=g), {"init": "cat", "steps": "10", "property": "object"})


def same_bits(a, b):
    return a.dtype == b.dtype == torch.float32 and a.shape == b.shape and a.numpy().tobytes() == b.numpy().tobytes()


# ------------------------------------------------------------------------------------ round trips
ROUND_TRIPS = [
    ("x.safetensors", None),
    ("x.bin", None),
    ("x.pt", None),
    ("x.safetensors", "kohya"),
    ("x.safetensors", "a1111"),
    ("x.pt", "diffusers"),
    ("x.png", None),
    ("x.webp", None),
    ("x.png", "a1111"),
]


@pytest.mark.parametrize("n", [1, 4])
@pytest.mark.parametrize("name,fmt", ROUND_TRIPS)
def test_every_format_round_trips_exactly(tmp_path, name, fmt, n):
    c = concept(n)
    c.vectors[0, 0] = 1e-38  # subnormal-ish and extreme values survive too
    c.vectors[-1, -1] = -3.4e38
    path = save_concept(c, tmp_path / name, fmt)
    [back] = load_concepts(path)
    assert back.token == c.token
    assert same_bits(back.vectors, c.vectors)
    assert back.meta == {**c.meta, "token": c.token}


def test_convert_chain_through_every_format_is_lossless(tmp_path, capsys):
    from oneword import commands

    c = concept(2)
    save_concept(c, tmp_path / "start.safetensors")
    prev = tmp_path / "start.safetensors"
    for i, (name, fmt) in enumerate(ROUND_TRIPS + [("end.safetensors", None)]):
        out = tmp_path / f"{i}-{name}"
        run_cli(commands, "convert", str(prev), str(out), *(["--format", fmt] if fmt else []))
        prev = out
    [back] = load_concepts(prev)
    assert same_bits(back.vectors, c.vectors) and back.token == c.token and back.meta == {**c.meta, "token": c.token}


def test_file_layouts_match_each_tool(tmp_path):
    c = concept(2)
    st = safetensors.torch.load_file(save_concept(c, tmp_path / "d.safetensors"))
    assert list(st) == ["<my-cat>"] and st["<my-cat>"].shape == (2, W)
    with open(tmp_path / "d.safetensors", "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    assert header["__metadata__"]["init"] == "cat" and header["__metadata__"]["token"] == "<my-cat>"
    assert list(safetensors.torch.load_file(save_concept(c, tmp_path / "k.safetensors", "kohya"))) == ["emb_params"]
    pt = torch.load(save_concept(c, tmp_path / "a.pt"), weights_only=True)
    assert pt["string_to_token"] == {"*": 265} and pt["name"] == "<my-cat>" and pt["step"] == 10
    assert torch.equal(pt["string_to_param"]["*"], c.vectors)
    assert {"sd_checkpoint", "sd_checkpoint_name"} <= set(pt)
    binf = torch.load(save_concept(c, tmp_path / "d.bin"), weights_only=True)
    assert list(binf) == ["<my-cat>"]  # diffusers .bin: exactly one key
    im = Image.open(save_concept(c, tmp_path / "a.png"))
    assert "sd-ti-embedding" in im.text


def test_half_precision_files_become_float32(tmp_path):
    v = torch.randn(2, W)
    for dt in (torch.float16, torch.bfloat16, torch.float64):
        safetensors.torch.save_file({"<h>": v.to(dt)}, tmp_path / "h.safetensors")
        [c] = load_concepts(tmp_path / "h.safetensors")
        assert c.vectors.dtype == torch.float32 and torch.equal(c.vectors, v.to(dt).float())


def test_old_one_dimensional_files(tmp_path):
    v = torch.randn(W)
    torch.save({"<old>": v}, tmp_path / "old.bin")
    safetensors.torch.save_file({"<old>": v}, tmp_path / "old.safetensors")
    torch.save(v, tmp_path / "bare.pt")
    for f in ("old.bin", "old.safetensors"):
        [c] = load_concepts(tmp_path / f)
        assert c.token == "<old>" and c.vectors.shape == (1, W) and torch.equal(c.vectors[0], v)
    [c] = load_concepts(tmp_path / "bare.pt", token="<bare>")
    assert c.token == "<bare>" and torch.equal(c.vectors[0], v)


def test_a1111_pt_as_a1111_writes_it(tmp_path):
    """A .pt as AUTOMATIC1111 saves it (tensor with requires_grad, no oneword extras)."""
    v = torch.randn(2, W, requires_grad=True)
    torch.save(
        {
            "string_to_token": {"*": 265},
            "string_to_param": {"*": v},
            "name": "easy-neg",
            "step": 1500,
            "sd_checkpoint": "abc123",
            "sd_checkpoint_name": "v1-5",
        },
        tmp_path / "easy.pt",
    )
    [c] = load_concepts(tmp_path / "easy.pt")
    assert c.token == "easy-neg" and torch.equal(c.vectors, v.detach())
    assert c.meta == {"step": "1500", "sd_checkpoint": "abc123", "sd_checkpoint_name": "v1-5", "token": "easy-neg"}


def test_token_from_file_name_and_rename(tmp_path):
    safetensors.torch.save_file({"emb_params": torch.randn(1, W)}, tmp_path / "my-style.safetensors")
    assert load_concepts(tmp_path / "my-style.safetensors")[0].token == "my-style"
    assert load_concepts(tmp_path / "my-style.safetensors", token="<s>")[0].token == "<s>"
    safetensors.torch.save_file({"emb_params": torch.randn(1, W)}, tmp_path / "bad name.safetensors")
    with pytest.raises(OnewordError, match="whitespace.*--token"):
        load_concepts(tmp_path / "bad name.safetensors")
    assert load_concepts(tmp_path / "bad name.safetensors", token="ok")[0].token == "ok"


def test_several_words_in_one_file(tmp_path):
    safetensors.torch.save_file({"<a>": torch.randn(1, W), "<b>": torch.randn(2, W)}, tmp_path / "ab.safetensors")
    cs = load_concepts(tmp_path / "ab.safetensors")
    assert [c.token for c in cs] == ["<a>", "<b>"]
    [b] = load_concepts(tmp_path / "ab.safetensors", token="<b>")
    assert b.n_vectors == 2
    with pytest.raises(OnewordError, match="none is called"):
        load_concepts(tmp_path / "ab.safetensors", token="<c>")


def test_folder_with_learned_embeds(tmp_path):
    save_concept(concept(1), tmp_path / "run" / "learned_embeds.safetensors")
    assert load_concepts(tmp_path / "run")[0].token == "<my-cat>"


def test_sdxl_file_keeps_both_parts_and_is_refused_on_sd1(tmp_path, pipe):
    l, g = torch.randn(2, 768), torch.randn(2, 1280)
    safetensors.torch.save_file({"clip_l": l, "clip_g": g}, tmp_path / "xl-style.safetensors")
    [c] = load_concepts(tmp_path / "xl-style.safetensors")
    assert c.token == "xl-style" and torch.equal(c.parts["clip_g"], g) and torch.equal(c.vectors, l)
    save_concept(c, tmp_path / "copy.safetensors")
    [c2] = load_concepts(tmp_path / "copy.safetensors")
    assert torch.equal(c2.parts["clip_l"], l) and torch.equal(c2.parts["clip_g"], g)
    with pytest.raises(OnewordError, match="SDXL"):
        save_concept(c, tmp_path / "copy.pt")
    n = len(pipe.tokenizer)
    with pytest.raises(OnewordError, match="SDXL.*text width 32"):
        install_concepts(pipe, [c])
    assert len(pipe.tokenizer) == n


# ---------------------------------------------------------------------- diffusers compatibility
@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("name", ["learned_embeds.safetensors", "learned_embeds.bin", "a1111.pt"])
def test_saved_file_loads_through_diffusers_itself(tmp_path, tiny_dir, n, name):
    c = concept(n)
    path = save_concept(c, tmp_path / name)
    ref = _pipe(tiny_dir)
    ref.load_textual_inversion(str(path))
    ids = ref.tokenizer.convert_tokens_to_ids(c.tokens)
    table = ref.text_encoder.get_input_embeddings().weight
    assert torch.equal(table[ids], c.vectors)
    # and the prompt really uses them: the pipeline expands the word into all its vectors
    prompt = ref.maybe_convert_prompt("a photo of <my-cat>", ref.tokenizer)
    assert ref.tokenizer(prompt).input_ids[4 : 4 + n] == ids


@pytest.mark.parametrize("n", [1, 3])
def test_install_concepts_equals_diffusers_load(tmp_path, tiny_dir, n):
    c = concept(n)
    path = save_concept(c, tmp_path / "w.safetensors")
    ref = _pipe(tiny_dir)
    ref.load_textual_inversion(str(path))
    ours = _pipe(tiny_dir)
    [loaded] = load_concepts(path)
    assert install_concepts(ours, [loaded]) == c.tokens
    assert ours.tokenizer.added_tokens_encoder == ref.tokenizer.added_tokens_encoder
    a, b = ours.text_encoder.get_input_embeddings().weight, ref.text_encoder.get_input_embeddings().weight
    assert a.shape == b.shape
    ids = ours.tokenizer.convert_tokens_to_ids(c.tokens)
    assert torch.equal(a[ids], c.vectors)
    assert torch.equal(a[: ids[0]], b[: ids[0]])  # every original row untouched
    # the prompt embedding uses the learned vectors
    with torch.no_grad():
        e1 = ours.encode_prompt("a photo of <my-cat>", "cpu", 1, False)[0]
        e2 = ref.encode_prompt("a photo of <my-cat>", "cpu", 1, False)[0]
    assert torch.equal(e1, e2)


def test_install_accepts_a_model_with_pipe(pipe):
    class Frozen:
        def __init__(self, p):
            self.pipe, self.tokenizer, self.text_encoder = p, p.tokenizer, p.text_encoder

    install_concepts(Frozen(pipe), [concept(1, token="<m>")])
    assert "<m>" in pipe.tokenizer.added_tokens_encoder


def test_install_twice_is_a_no_op_but_a_different_word_is_refused(pipe):
    c = concept(2)
    install_concepts(pipe, [c])
    n = len(pipe.tokenizer)
    assert install_concepts(pipe, [c]) == []
    assert len(pipe.tokenizer) == n
    with pytest.raises(OnewordError, match="already added"):
        install_concepts(pipe, [concept(2, seed=1)])
    with pytest.raises(OnewordError, match="already added"):
        install_concepts(pipe, [concept(1, token="<MY-CAT>", seed=2)])


def test_install_refuses_vocabulary_words_and_leaves_model_untouched(pipe):
    n = len(pipe.tokenizer)
    rows = pipe.text_encoder.get_input_embeddings().weight.clone()
    for tok in ("cat", "sks"):
        with pytest.raises(OnewordError, match="vocabulary"):
            install_concepts(pipe, [concept(1, token="<ok>"), concept(1, token=tok)])
    with pytest.raises(OnewordError, match="both add"):
        install_concepts(pipe, [concept(1, token="<ok>"), concept(1, token="<OK>")])
    assert len(pipe.tokenizer) == n and torch.equal(pipe.text_encoder.get_input_embeddings().weight, rows)
    install_concepts(pipe, [concept(1, token="sks")], allow_vocab_words=True)


def test_check_token_free(pipe):
    from oneword.install import check_token_free

    check_token_free(pipe.tokenizer, "<teal-ring>", 3)
    for bad in ("cat", "dog", "a b", ""):
        with pytest.raises(OnewordError):
            check_token_free(pipe.tokenizer, bad)
    install_concepts(pipe, [concept(2)])
    with pytest.raises(OnewordError, match="already added"):
        check_token_free(pipe.tokenizer, "<My-Cat>")
    with pytest.raises(OnewordError, match="already added"):
        check_token_free(pipe.tokenizer, "<my-cat>_1")


def test_wrong_width_names_both_widths(pipe):
    with pytest.raises(OnewordError) as e:
        install_concepts(pipe, [concept(1, dim=768)])
    msg = str(e.value)
    assert "768" in msg and "32" in msg and "SD1.x" in msg and "\n" not in msg


def test_install_keeps_the_callers_random_state(pipe):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    install_concepts(pipe, [concept(2)])
    assert torch.equal(torch.rand(3), expected)


def test_upper_case_multi_vector_tokens_get_all_vectors(pipe):
    """diffusers' own expansion misses <MyCat>_1 (the tokenizer lower-cases); ours does not."""
    c = concept(3, token="<MyCat>")
    install_concepts(pipe, [c])
    ids = pipe.tokenizer.convert_tokens_to_ids(c.tokens)
    text = pipe.maybe_convert_prompt("a <MyCat> and a <mycat>", pipe.tokenizer)
    assert text == "a <MyCat> <MyCat>_1 <MyCat>_2 and a <mycat> <MyCat>_1 <MyCat>_2"
    assert pipe.tokenizer(text).input_ids[2:5] == ids
    assert pipe.maybe_convert_prompt(text, pipe.tokenizer) == text  # idempotent


def test_expand_prompt():
    cs = [concept(2, token="<cat>"), concept(3, token="<cat>2"), concept(1, token="<one>")]
    assert expand_prompt("a <cat> and <cat>2, <one>", cs) == "a <cat> <cat>_1 and <cat>2 <cat>2_1 <cat>2_2, <one>"
    assert expand_prompt("<cat>s", cs) == "<cat> <cat>_1s"
    once = expand_prompt("x <cat> y", cs)
    assert expand_prompt(once, cs) == once
    assert expand_prompt(["<cat>", "none"], cs) == ["<cat> <cat>_1", "none"]
    # as the tokenizer sees it: any case (the spelling kept), next to punctuation; a mapping works too
    assert expand_prompt("(<CAT>), <cat>.", {"<cat>": 2}) == "(<CAT> <cat>_1), <cat> <cat>_1."
    assert expand_prompt("a <cat>", {"<cat>": 1}) == "a <cat>"


def test_vector_token_names():
    assert vector_token_names("<c>", 1) == ["<c>"]
    assert vector_token_names("<c>", 3) == ["<c>", "<c>_1", "<c>_2"]
    assert concept(3, token="<c>").tokens == vector_token_names("<c>", 3)


def test_describe_lists_nearest_words(pipe):
    tok, te = pipe.tokenizer, pipe.text_encoder
    table = te.get_input_embeddings().weight.detach()
    cat = tok.convert_tokens_to_ids("cat</w>")
    c = Concept("<c>", torch.stack([table[cat] * 2.0, torch.randn(W)]), {"init": "cat"})
    text = describe(c)
    assert "token: <c>" in text and "2 x 32" in text and "norms:" in text and "meta init: cat" in text
    text = describe(c, tok, te)
    first = [ln for ln in text.splitlines() if ln.startswith("vector 0 nearest:")][0]
    assert first.split(": ", 1)[1].startswith("cat (1.00)")
    assert "not comparable" in describe(concept(1, dim=768), tok, te)


# ----------------------------------------------------------------------------------- validation
def _st(tmp_path, tensors, name="v.safetensors"):
    safetensors.torch.save_file(tensors, tmp_path / name)
    return tmp_path / name


@pytest.mark.parametrize(
    "tensor,match",
    [
        (torch.tensor([[1.0, float("nan")]]), "NaN"),
        (torch.tensor([[1.0, float("inf")]]), "NaN or infinite"),
        (torch.tensor([[1e300, 0.0]], dtype=torch.float64), "too large for float32"),
        (torch.ones(2, 3, dtype=torch.int64), "I64"),
        (torch.ones(1, 2, 3), "shape"),
        (torch.ones(76, 8), "76 vectors|vectors of width"),
        (torch.ones(1, 5000), "width"),
        (torch.ones(0, 8), "vectors"),
        (torch.ones(()), "shape"),
    ],
)
def test_bad_tensors_are_refused(tmp_path, tensor, match):
    with pytest.raises(OnewordError, match=match):
        load_concepts(_st(tmp_path, {"<t>": tensor}))
    torch.save({"<t>": tensor}, tmp_path / "v.bin")
    with pytest.raises(OnewordError):
        load_concepts(tmp_path / "v.bin")


def _raw_st(header: dict, body: bytes = b"", n: int | None = None) -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h) if n is None else n) + h + body


def _refused_headers() -> dict[str, bytes]:
    """safetensors files whose header alone must refuse them: sizes that would allocate gigabytes, a header
    longer than the limit, non-string metadata, a model checkpoint's tensor count."""
    return {
        "billion.safetensors": _raw_st({"<t>": {"dtype": "F32", "shape": [1, 10**9], "data_offsets": [0, 4 * 10**9]}}),
        "rows.safetensors": _raw_st(
            {"<t>": {"dtype": "F32", "shape": [10**6, 768], "data_offsets": [0, 8]}}, b"\0" * 8
        ),
        "header.safetensors": struct.pack("<Q", 2**62) + b"{}",
        "bigheader.safetensors": struct.pack("<Q", 11_000_000) + b"{" + b" " * 100,
        "meta.safetensors": _raw_st(
            {"__metadata__": {"a": 1}, "<t>": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4
        ),
        "model.safetensors": _raw_st(
            {f"w{i}": {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]} for i in range(300)},
            b"\0" * 1200,
        ),
        "offsets.safetensors": _raw_st({"<t>": {"dtype": "F32", "shape": [1, 4], "data_offsets": [0, 16]}}, b"\0" * 8),
        "int.safetensors": _raw_st({"<t>": {"dtype": "I64", "shape": [1, 2], "data_offsets": [0, 16]}}, b"\0" * 16),
    }


def test_huge_declared_sizes_are_refused_before_allocating(tmp_path):
    import tracemalloc

    for name, data in _refused_headers().items():
        (tmp_path / name).write_bytes(data)
        tracemalloc.start()
        with pytest.raises(OnewordError) as e:
            load_concepts(tmp_path / name)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 50 << 20, name
        assert "\n" not in str(e.value)


def test_a_refused_header_never_reaches_the_tensor_reader(tmp_path, monkeypatch):
    """The header is checked before any tensor is read: safetensors' reader (which allocates what the header
    declares, outside tracemalloc's view) is never called for a file whose header is refused."""
    read = []
    real = safetensors.torch.load
    monkeypatch.setattr(safetensors.torch, "load", lambda data: read.append(len(data)) or real(data))
    for name, data in _refused_headers().items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(OnewordError):
            load_concepts(tmp_path / name)
        assert read == [], f"{name}: tensors read before its header was refused"
    [back] = load_concepts(save_concept(concept(2), tmp_path / "good.safetensors"))  # the spy is on the real path
    assert read and same_bits(back.vectors, concept(2).vectors)


def test_learned_word_is_the_optimisers_vector_bit_for_bit(tiny_dir, tiny_model, photos, tmp_path):
    """What `learn` returns, what it saves and what diffusers loads is the vector AdamW holds, bit for bit: not
    rounded (e.g. through fp16) or rescaled on the way out. Two independent expectations: the checkpoint's copy
    of the optimiser's parameter, and, at learning rate 0, the init word's own row of the embedding table."""
    from oneword.invert import LearnConfig, learn

    table = tiny_model.text_encoder.get_input_embeddings().weight.detach()
    ring = table[tiny_model.tokenizer("ring", add_special_tokens=False).input_ids[0]]
    for lr in (0.0, 5e-2):
        cfg = LearnConfig(
            token="<teal-ring>", init="ring", vectors=2, steps=4, batch_size=2, lr=lr, save_every=2, early_stop=False
        )
        out = tmp_path / f"lr{lr}"
        word = learn(tiny_model, photos, cfg, out, progress=False)
        held = safetensors.torch.load_file(out / "checkpoint.safetensors")["vectors"]
        [saved] = load_concepts(out / "learned_embeds.safetensors")
        assert same_bits(word.vectors, held) and same_bits(saved.vectors, held)
        ref = _pipe(tiny_dir)
        ref.load_textual_inversion(str(out / "learned_embeds.safetensors"))
        ids = ref.tokenizer.convert_tokens_to_ids(["<teal-ring>", "<teal-ring>_1"])
        assert same_bits(ref.text_encoder.get_input_embeddings().weight[ids].detach(), held)
        if lr == 0:
            assert same_bits(word.vectors, ring.repeat(2, 1))  # nothing moved: exactly where it started
        else:
            assert not torch.equal(word.vectors, ring.repeat(2, 1))  # it learned something


def test_token_names_are_validated(tmp_path):
    path = _st(tmp_path, {"emb_params": torch.ones(1, 4)}, "ok.safetensors")
    for bad in ("", "   ", "a\x00b", "x\ny", "a\u200bb", "z" * 101, "two words"):
        with pytest.raises(OnewordError):
            load_concepts(path, token=bad)
        if bad:
            safetensors.torch.save_file({bad: torch.ones(1, 4)}, tmp_path / "t.safetensors")
            with pytest.raises(OnewordError, match="--token"):
                load_concepts(tmp_path / "t.safetensors")


def test_metadata_types_are_validated(tmp_path):
    torch.save({"string_to_param": {"*": torch.ones(1, 4)}, "name": 5}, tmp_path / "n.pt")
    with pytest.raises(OnewordError, match="'name' is int"):
        load_concepts(tmp_path / "n.pt")
    torch.save({"string_to_param": {"*": torch.ones(1, 4), "#": torch.ones(1, 4)}, "name": "x"}, tmp_path / "two.pt")
    with pytest.raises(OnewordError, match="exactly one"):
        load_concepts(tmp_path / "two.pt")
    torch.save([torch.ones(1, 4)], tmp_path / "list.pt")
    with pytest.raises(OnewordError, match="list"):
        load_concepts(tmp_path / "list.pt")


# ------------------------------------------------------------------------- never runs code
class _Evil:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def _evil_files(tmp_path, canary):
    cmd = f"touch {canary}"
    files = {}
    torch.save({"<x>": _Evil(cmd)}, tmp_path / "evil_dict.bin")
    files["torch.save with __reduce__"] = tmp_path / "evil_dict.bin"
    torch.save({"string_to_param": {"*": _Evil(cmd)}, "name": "x"}, tmp_path / "evil_a1111.pt")
    files["A1111 .pt"] = tmp_path / "evil_a1111.pt"
    (tmp_path / "raw.pt").write_bytes(pickle.dumps(_Evil(cmd)))
    files["raw pickle"] = tmp_path / "raw.pt"
    (tmp_path / "proto0.bin").write_bytes(f"cos\nsystem\n(S'{cmd}'\ntR.".encode())
    files["protocol-0 pickle"] = tmp_path / "proto0.bin"
    # a valid torch zip whose data.pkl is replaced by code that imports os / builtins
    for i, payload in enumerate(
        [
            f"cos\nsystem\n(S'{cmd}'\ntR.".encode(),
            f"cbuiltins\nexec\n(S'import os; os.system(\"{cmd}\")'\ntR.".encode(),
            b"cbuiltins\n__import__\n(S'os'\ntR.",
            b"\x80\x02csubprocess\ncall\n]q\x00(X\x05\x00\x00\x00touchq\x01X"
            + struct.pack("<I", len(str(canary)))
            + str(canary).encode()
            + b"e\x85R.",
        ]
    ):
        p = tmp_path / f"zip{i}.pt"
        p.write_bytes(replace_data_pkl(payload))
        files[f"torch zip with code #{i}"] = p
    return files


def replace_data_pkl(payload: bytes) -> bytes:
    buf = io.BytesIO()
    torch.save({"<x>": torch.ones(1, 4)}, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for info in src.infolist():
            data = payload if info.filename.endswith("/data.pkl") else src.read(info)
            z.writestr(info.filename, data)
    return out.getvalue()


def test_pickles_that_run_code_are_refused_and_nothing_runs(tmp_path):
    canary = tmp_path / "CANARY"
    for what, path in _evil_files(tmp_path, canary).items():
        with pytest.raises(OnewordError) as e:
            load_concepts(path)
        msg = str(e.value)
        assert "\n" not in msg
        assert any(w in msg for w in ("refused", "never", "pickle", "corrupt")), (what, msg)
        assert not canary.exists(), what


def test_loader_source_never_unpickles():
    """Every torch.load call passes weights_only=True; nothing imports pickle or calls its loaders."""
    import ast
    import importlib
    import inspect
    import pkgutil

    import oneword.concept
    import oneword.formats

    mods = [oneword.concept, oneword.formats] + [
        importlib.import_module(f"oneword.formats.{m.name}") for m in pkgutil.iter_modules(oneword.formats.__path__)
    ]
    assert {m.__name__ for m in mods} >= {
        "oneword.formats.safetensors_layouts",
        "oneword.formats.torch_zip",
        "oneword.formats.a1111_image",
    }
    tree = ast.Module(body=[n for m in mods for n in ast.parse(inspect.getsource(m)).body], type_ignores=[])
    loads = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            assert not any(n.split(".")[0] in ("pickle", "_pickle", "dill", "marshal") for n in names)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("load", "loads"):
            base = ast.unparse(node.func.value)
            assert base in ("torch", "json", "safetensors.torch"), base
            if base == "torch":
                kw = {k.arg: ast.unparse(k.value) for k in node.keywords}
                assert kw.get("weights_only") == "True"
                loads.append(node)
    assert len(loads) == 1


# ----------------------------------------------------------------------------- A1111 images
def test_a1111_png_text_chunk_and_pixels_each_suffice(tmp_path):
    c = concept(2)
    for name, kw in {
        "text.png": dict(pixels=False),
        "pixels.png": dict(text_chunk=False),
        "pixels.webp": dict(fmt="WEBP", text_chunk=False),
    }.items():
        (tmp_path / name).write_bytes(a1111_image_bytes(c, **kw))
        [back] = load_concepts(tmp_path / name)
        assert back.token == c.token and same_bits(back.vectors, c.vectors), name


def test_a1111_pixel_stream_matches_reference():
    from oneword.formats.a1111_image import _lcg_values

    # first values of A1111's lcg() (from its image_embedding self-test) and its 100k checksum
    assert _lcg_values(12).tolist() == [253, 242, 127, 44, 157, 27, 239, 133, 38, 79, 167, 4]
    assert int(_lcg_values(100_100)[100:].astype(np.int64).sum()) == 12731374


def test_a1111_json_from_a1111_encoder_shape(tmp_path):
    """The JSON A1111 writes: TORCHTENSOR nested lists of float64, string_to_param, name, step."""
    import base64

    from PIL import PngImagePlugin

    v = np.random.default_rng(0).random((2, W))
    d = {
        "string_to_token": {"*": 265},
        "string_to_param": {"*": {"TORCHTENSOR": v.tolist()}},
        "name": "neg",
        "step": 300,
        "sd_checkpoint": None,
        "sd_checkpoint_name": None,
    }
    info = PngImagePlugin.PngInfo()
    info.add_text("sd-ti-embedding", base64.b64encode(json.dumps(d).encode()).decode())
    Image.new("RGB", (64, 64)).save(tmp_path / "neg.png", pnginfo=info)
    [c] = load_concepts(tmp_path / "neg.png")
    assert c.token == "neg" and torch.equal(c.vectors, torch.tensor(v, dtype=torch.float32)) and c.meta["step"] == "300"


def test_images_without_embeddings_are_refused(tmp_path):
    Image.new("RGB", (64, 64), "red").save(tmp_path / "plain.png")
    Image.new("RGB", (64, 64), "red").save(tmp_path / "plain.jpg")
    Image.new("RGB", (64, 64), "red").save(tmp_path / "plain.webp")
    for f in ("plain.png", "plain.jpg", "plain.webp"):
        with pytest.raises(OnewordError, match="no embedding|without an embedding"):
            load_concepts(tmp_path / f)


# ---------------------------------------------------------------------------- odd inputs
def test_odd_paths(tmp_path):
    with pytest.raises(OnewordError, match="no such file"):
        load_concepts(tmp_path / "missing.safetensors")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(OnewordError, match="empty"):
        load_concepts(tmp_path / "empty.pt")
    (tmp_path / "dir").mkdir()
    with pytest.raises(OnewordError, match="folder"):
        load_concepts(tmp_path / "dir")
    os.mkfifo(tmp_path / "fifo.pt")
    with pytest.raises(OnewordError, match="not a regular file"):
        load_concepts(tmp_path / "fifo.pt")
    (tmp_path / "text.pt").write_text("hello, I am not an embedding")
    with pytest.raises(OnewordError, match="not an embedding"):
        load_concepts(tmp_path / "text.pt")


def _peak_rss_since_reset():
    """(reset, read) of this process's peak resident memory (VmHWM), or None where Linux does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None

    def read():
        with open("/proc/self/status") as f:
            return {k: int(v.split()[0]) << 10 for k, v in (ln.split(":", 1) for ln in f) if k in ("VmHWM", "VmRSS")}

    return read


def test_diffusers_cpu_slice_bin_reads_only_the_slice(tmp_path):
    """diffusers' example script on the CPU saves `weight[first:last + 1]`, a view: torch writes the whole
    (49408 + n) x 768 table's storage, ~145 MB. The word is the 3 x 768 slice (what ComfyUI, diffusers and
    kohya read); it is read without reading the table (memory-mapped), and a model is still refused."""
    import gc

    table = torch.zeros(49411, 768)
    table[49408:] = torch.randn(3, 768)
    torch.save({"<cat-toy>": table[49408:49411]}, tmp_path / "learned_embeds.bin")
    want = table[49408:].clone()
    del table
    gc.collect()
    assert (tmp_path / "learned_embeds.bin").stat().st_size > 140 << 20
    read = _peak_rss_since_reset()
    before = read()["VmRSS"] if read else 0
    [c] = load_concepts(tmp_path / "learned_embeds.bin")
    if read:
        assert read()["VmHWM"] - before < 48 << 20, "read more than the slice"
    assert c.token == "<cat-toy>" and torch.equal(c.vectors, want)
    # a model checkpoint of the same size: many tensors, refused by its record count before torch reads it
    torch.save({f"layer{i}.weight": torch.zeros(160, 768) for i in range(150)}, tmp_path / "model.bin")
    assert (tmp_path / "model.bin").stat().st_size > 64 << 20
    with pytest.raises(OnewordError, match="a model, not an embedding"):
        load_concepts(tmp_path / "model.bin")
    # a single table saved whole is not a word either
    torch.save({"<t>": torch.zeros(25000, 768)}, tmp_path / "table.bin")
    with pytest.raises(OnewordError, match="25000 vectors"):
        load_concepts(tmp_path / "table.bin")
    # past any real table's size: refused from its size alone (a sparse file: nothing is read)
    with open(tmp_path / "huge.bin", "wb") as f:
        f.write(b"PK\x03\x04")
        f.truncate(3 << 30)
    with pytest.raises(OnewordError, match="model checkpoint"):
        load_concepts(tmp_path / "huge.bin")


def test_save_refuses_unknown_formats_and_bad_concepts(tmp_path):
    with pytest.raises(OnewordError, match="extension|format"):
        save_concept(concept(), tmp_path / "x.txt")
    with pytest.raises(OnewordError, match="kohya"):
        save_concept(concept(), tmp_path / "x.pt", "kohya")
    with pytest.raises(OnewordError, match="unknown format"):
        save_concept(concept(), tmp_path / "x.safetensors", "comfy")
    with pytest.raises(OnewordError, match="NaN"):
        save_concept(Concept("<n>", torch.full((1, 4), float("nan"))), tmp_path / "n.safetensors")
    assert not (tmp_path / "n.safetensors").exists()


def test_save_is_atomic_and_keeps_the_previous_file_on_failure(tmp_path, monkeypatch):
    import errno

    path = save_concept(concept(1), tmp_path / "w.safetensors")
    before = path.read_bytes()

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OnewordError, match="disk full"):
        save_concept(concept(2, seed=5), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]


# ------------------------------------------------------------------------------------- CLI
def run_cli(module, *argv):
    parser = argparse.ArgumentParser(prog="oneword")
    module.register(parser.add_subparsers())
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_convert_and_inspect_commands(tmp_path, capsys):
    from oneword import commands

    save_concept(concept(2), tmp_path / "w.safetensors")
    run_cli(commands, "convert", str(tmp_path / "w.safetensors"), str(tmp_path / "w.pt"), "--token", "<new>")
    [c] = load_concepts(tmp_path / "w.pt")
    assert c.token == "<new>"
    run_cli(commands, "inspect", str(tmp_path / "w.pt"))
    out = capsys.readouterr().out
    assert "token: <new>" in out and "2 x 32" in out
    with pytest.raises(OnewordError):
        run_cli(commands, "convert", str(tmp_path / "w.pt"), str(tmp_path / "w.txt"))
    with pytest.raises(SystemExit):
        run_cli(commands, "convert", str(tmp_path / "w.pt"), str(tmp_path / "w.bin"), "--format", "comfy")


def test_cli_errors_are_one_line_exit_2(tmp_path, capsys):
    from oneword import commands as cli

    (tmp_path / "evil.pt").write_bytes(pickle.dumps(_Evil(f"touch {tmp_path / 'CANARY'}")))
    assert cli.main(["convert", str(tmp_path / "evil.pt"), str(tmp_path / "out.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "CANARY").exists() and not (tmp_path / "out.safetensors").exists()
    save_concept(concept(1), tmp_path / "w.safetensors")
    assert cli.main(["inspect", str(tmp_path / "w.safetensors")]) == 0


def test_inspect_with_model(tmp_path, tiny_dir, capsys):
    from oneword import commands

    save_concept(concept(2), tmp_path / "w.safetensors")
    run_cli(commands, "inspect", str(tmp_path / "w.safetensors"), "--model", str(tiny_dir))
    out = capsys.readouterr().out
    assert "vector 0 nearest:" in out and "vector 1 nearest:" in out
