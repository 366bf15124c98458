"""Each tool's own acceptance rules, applied to the files oneword writes (and to the tools' own files, read
by oneword). docs/compatibility.md is the table these tests keep true.

Every rule below is restated from the tool's source, read at the commit named beside it (repository, file,
commit); none of their code is copied. A rule that needs the tool itself (diffusers) runs the real one.
"""

import io
import os
import pickle
import pickletools
import re
import zipfile
from pathlib import Path

import pytest
import safetensors.torch
import torch

from oneword.concept import Concept
from oneword.errors import OnewordError
from oneword.formats import TOOLS, load_concepts, save_concept, save_for_tool

W = 768  # SD1.x's text width: what the tools' width checks expect


def word(n=3, dim=W, token="<my-cat>", seed=0):
    g = torch.Generator().manual_seed(seed)
    return Concept(token, torch.randn(n, dim, generator=g), {"init": "cat", "steps": "500"})


def sdxl_word(n=2, token="<xl>"):
    g = torch.Generator().manual_seed(1)
    l, gg = torch.randn(n, 768, generator=g), torch.randn(n, 1280, generator=g)
    return Concept(token, l, {}, {"clip_l": l, "clip_g": gg})


def every_file(tmp_path, c):
    """Every file oneword writes for an SD1.x word: learn's output, each --format, each --for."""
    out = {
        "learn": save_concept(c, tmp_path / "learn" / "learned_embeds.safetensors"),
        "diffusers.bin": save_concept(c, tmp_path / "d" / "my-cat.bin"),
        "diffusers.pt": save_concept(c, tmp_path / "dp" / "my-cat.pt", "diffusers"),
        "a1111.pt": save_concept(c, tmp_path / "a" / "my-cat.pt"),
        "a1111.safetensors": save_concept(c, tmp_path / "as" / "my-cat.safetensors", "a1111"),
        "kohya.safetensors": save_concept(c, tmp_path / "k" / "my-cat.safetensors", "kohya"),
    }
    for tool in TOOLS:
        out[f"for {tool}"] = save_for_tool(c, tmp_path / tool / "my-cat", tool)
    return out


def plain_torch_load(path):
    """What a tool's plain `torch.load(path, map_location="cpu")` does with torch >= 2.6 (weights_only)."""
    return torch.load(path, map_location="cpu", weights_only=True)


# ------------------------------------------------------------------------------------ AUTOMATIC1111
# AUTOMATIC1111/stable-diffusion-webui
#   modules/safe.py @ 05933840f0676dd1a90a7e2ad3f2a0672624b2cd (the same rule @ 2d2edc110fb46fcf519804f57024f9c300188f9b):
#     check_zip_filenames: every zip record is DIR/data.pkl, DIR/version or DIR/data/<digits>, else refused;
#     exactly one DIR/data.pkl; RestrictedUnpickler.find_class allows only the globals in A1111_GLOBALS;
#     persistent_load asserts the persistent id starts with 'storage'. torch.load is replaced by this check
#     followed by the real load.
#   modules/textual_inversion/textual_inversion.py @ 22ecb78b51f7e6f0234cbc0efbde4ee9a2dc466f,
#     EmbeddingDatabase.load_from_file: .pt/.bin through (checked) torch.load, .safetensors through
#     safetensors.torch.load_file, other extensions skipped; the word is named after the file;
#     'string_to_param' (one entry) / 'clip_g' and 'clip_l' (SDXL) / a dict of exactly one tensor (1-D is
#     unsqueezed); a word whose width (shape[-1]) is not the model's is skipped.
A1111_RECORD = re.compile(r"[^/]+/((data/\d+)|version|(data\.pkl))")
A1111_GLOBALS = {
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_device_tensor_from_numpy"),
    ("torch.nn.modules.container", "ParameterDict"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("_codecs", "encode"),
    ("__builtin__", "set"),
} | {
    ("torch", n)
    for n in (
        "FloatStorage",
        "HalfStorage",
        "IntStorage",
        "LongStorage",
        "DoubleStorage",
        "ByteStorage",
        "float32",
        "BFloat16Storage",
    )
}


def pickle_globals_and_persistent_ids(data: bytes) -> tuple[set, list]:
    """(globals, first element of each persistent id) a pickle refers to, read with pickletools (nothing runs)."""
    found, pids, texts, marks, memo, last_tuple, text = set(), [], [], [], {}, None, None
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("BINPUT", "LONG_BINPUT", "PUT", "MEMOIZE"):
            memo[len(memo) if op.name == "MEMOIZE" else arg] = text  # the value just pushed (texts matter)
            continue
        if op.name in ("BINGET", "LONG_BINGET", "GET"):
            text = memo.get(arg)  # a memoised text, pushed again
        else:
            text = arg if isinstance(arg, str) and ("UNICODE" in op.name or "STRING" in op.name) else None
        if text is not None:
            texts.append(text)
            if marks and marks[-1] is None:
                marks[-1] = text  # the first text after a MARK: a persistent id's kind
        if op.name == "GLOBAL":
            found.add(tuple(arg.split(" ", 1)))
        elif op.name == "STACK_GLOBAL":
            assert len(texts) >= 2, "STACK_GLOBAL without two names before it"
            found.add((texts[-2], texts[-1]))
        elif op.name == "BINPERSID":
            pids.append(last_tuple)
        elif op.name == "MARK":
            marks.append(None)
        elif pickletools.markobject in op.stack_before and marks:
            first = marks.pop()
            if op.name == "TUPLE":
                last_tuple = first
    return found, pids


def a1111_check_pt(path):
    """AUTOMATIC1111's safe.check_pt, restated: the record names, then every global of the pickle."""
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        bad = [n for n in names if not A1111_RECORD.fullmatch(n)]
        assert not bad, f"AUTOMATIC1111 refuses {path.name}: bad file inside: {bad[0]}"
        pkl = [n for n in names if re.fullmatch(r"[^/]+/data\.pkl", n)]
        assert len(pkl) == 1, f"AUTOMATIC1111 needs exactly one data.pkl, found {len(pkl)}"
        found, pids = pickle_globals_and_persistent_ids(z.read(pkl[0]))
    assert found <= A1111_GLOBALS, f"AUTOMATIC1111 forbids {sorted(found - A1111_GLOBALS)}"
    assert all(p == "storage" for p in pids), pids


def a1111_reads(path: Path, width=W, safe_unpickler=True):
    """(name, vectors) as AUTOMATIC1111's EmbeddingDatabase.load_from_file takes them (Forge: safe_unpickler
    off), or None for a file it skips; an assertion for one it refuses."""
    ext = path.suffix.upper()
    if ext in (".BIN", ".PT"):
        if safe_unpickler:
            a1111_check_pt(path)
        data = plain_torch_load(path)
    elif ext == ".SAFETENSORS":
        data = safetensors.torch.load_file(path, device="cpu")
    else:
        return None
    if "string_to_param" in data:
        params = data["string_to_param"]
        assert len(params) == 1, "embedding file has multiple terms in it"
        vec = next(iter(params.values()))
    elif isinstance(data, dict) and "clip_g" in data and "clip_l" in data:
        vec = torch.cat([data["clip_l"], data["clip_g"]], dim=-1)  # only its width matters here
    elif isinstance(data, dict) and isinstance(next(iter(data.values())), torch.Tensor):
        assert len(data) == 1, "embedding file has multiple terms in it"
        vec = next(iter(data.values()))
        vec = vec.unsqueeze(0) if vec.dim() == 1 else vec
    else:
        raise AssertionError(
            f"Couldn't identify {path.name} as neither textual inversion embedding nor diffuser concept"
        )
    assert vec.shape[-1] == width, f"skipped: width {vec.shape[-1]}, the model's is {width}"
    return path.stem, vec.float()


def test_a1111_pickle_reader_sees_what_a1111_would_refuse():
    """The restated rule itself: a torch >= 2.1 zip straight from torch.save is refused (its extra records),
    a pickle naming another global is refused, and one persistent id is seen per tensor."""
    buf = io.BytesIO()
    torch.save({"string_to_param": {"*": torch.ones(2, 3)}, "x": [torch.zeros(1)], "name": "n"}, buf)
    with zipfile.ZipFile(buf) as z:
        assert any(not A1111_RECORD.fullmatch(n) for n in z.namelist())
        found, pids = pickle_globals_and_persistent_ids(z.read("archive/data.pkl"))
    assert found == {("torch._utils", "_rebuild_tensor_v2"), ("torch", "FloatStorage"), ("collections", "OrderedDict")}
    assert pids == ["storage", "storage"]
    assert pickle_globals_and_persistent_ids(b"\x80\x02cos\nsystem\nq\x00.")[0] == {("os", "system")}
    assert pickle_globals_and_persistent_ids(pickle.dumps(os.system, protocol=4))[0] == {(os.name, "system")}


@pytest.mark.parametrize("n", [1, 3])
def test_automatic1111_and_forge_load_every_file_oneword_writes(tmp_path, n):
    c = word(n)
    for what, path in every_file(tmp_path, c).items():
        if what == "for onetrainer":
            continue  # OneTrainer's own key; A1111 reads it too, as any one-tensor dict (checked below)
        for safe in (True, False):  # AUTOMATIC1111 (safe unpickler), Forge (plain torch.load)
            got = a1111_reads(path, safe_unpickler=safe)
            assert got is not None, what
            name, vec = got
            assert torch.equal(vec, c.vectors), what
            assert name == path.stem
    assert a1111_reads(every_file(tmp_path / "ot", c)["for onetrainer"])[1].shape == (n, W)


def test_automatic1111_loads_its_own_file_and_oneword_reads_it_back(tmp_path):
    """A file as AUTOMATIC1111's Embedding.save writes it (its record, tensor with requires_grad), and the
    same word converted by oneword for AUTOMATIC1111: both pass A1111's rules with the same vectors."""
    v = torch.randn(2, W, requires_grad=True)
    torch.save(
        {
            "string_to_token": {"*": 265},
            "string_to_param": {"*": v},
            "name": "easy",
            "step": 10,
            "sd_checkpoint": None,
            "sd_checkpoint_name": None,
        },
        tmp_path / "easy.pt",
    )
    [c] = load_concepts(tmp_path / "easy.pt")
    out = save_concept(c, tmp_path / "out" / "easy.pt", "a1111")
    assert torch.equal(a1111_reads(out)[1], v.detach())
    assert torch.equal(a1111_reads(save_for_tool(c, tmp_path / "easy", "automatic1111"))[1], v.detach())


def test_sdxl_words_pass_a1111s_sdxl_rule(tmp_path):
    c = sdxl_word()
    for tool in ("automatic1111", "forge"):
        path = save_for_tool(c, tmp_path / tool / "xl", tool)
        name, vec = a1111_reads(path, width=768 + 1280)
        assert name == "xl" and torch.equal(vec, torch.cat([c.parts["clip_l"], c.parts["clip_g"]], -1))


# ------------------------------------------------------------------------------------------ ComfyUI
# comfyanonymous/ComfyUI comfy/sd1_clip.py @ b55c2247654476fbc744e572ba7a834fd9378745, load_embed and
# SDTokenizer.tokenize_with_weights: `embedding:NAME` finds NAME, else NAME + .safetensors/.pt/.bin;
# .safetensors through safetensors.torch.load_file, anything else through torch.load(weights_only=True)
# (when that fails it guesses a width from raw data/ records); then, in this order: 'string_to_param'
# (its first value), a list, the encoder's key (SD1's tokenizer: 'clip_l'; SDXL's second: 'clip_g') if
# present, 'bundle_emb.*' LoRA bundles, else the first tensor; a 1-D tensor is one vector, else one per row.
def comfyui_finds(folder: Path, name: str) -> Path | None:
    path = folder / name
    if path.is_file():
        return path
    for ext in (".safetensors", ".pt", ".bin"):
        if (folder / (name + ext)).is_file():
            return folder / (name + ext)
    return None


def comfyui_reads(path: Path, embed_key="clip_l") -> torch.Tensor:
    if path.name.lower().endswith(".safetensors"):
        embed = safetensors.torch.load_file(path, device="cpu")
    else:
        embed = torch.load(path, weights_only=True, map_location="cpu")  # must not need ComfyUI's guessing fallback
    if "string_to_param" in embed:
        out = next(iter(embed["string_to_param"].values()))
    elif embed_key is not None and embed_key in embed:
        out = embed[embed_key]
    else:
        bundled = [v for k, v in embed.items() if k.startswith("bundle_emb.")]
        assert not bundled
        out = next(iter(embed.values()))
    return out.unsqueeze(0) if out.dim() == 1 else out


@pytest.mark.parametrize("n", [1, 3])
def test_comfyui_reads_the_word_from_every_file_oneword_writes(tmp_path, n):
    c = word(n)
    for what, path in every_file(tmp_path, c).items():
        assert comfyui_finds(path.parent, path.stem) == path, what  # `embedding:my-cat` finds it
        assert torch.equal(comfyui_reads(path).float(), c.vectors), what


def test_oneword_reads_other_tools_files_as_comfyui_does(tmp_path):
    """Files other tools write, read by oneword as ComfyUI reads them: the same vectors, and a word that carries
    no name of its own is named after its file, as `embedding:NAME` finds it."""
    v = torch.randn(2, W)
    torch.save(
        {"string_to_token": {"*": 265}, "string_to_param": {"*": v}, "name": "a1111-word", "step": 1},
        tmp_path / "a1111-word.pt",
    )
    torch.save({"emb_params": v}, tmp_path / "kohya-word.pt")
    safetensors.torch.save_file({"emb_params": v}, tmp_path / "kohya-st.safetensors")
    safetensors.torch.save_file({"emp_params": v}, tmp_path / "onetrainer-word.safetensors")
    torch.save({"<diffusers-word>": v}, tmp_path / "learned_embeds.bin")
    for path in sorted(tmp_path.iterdir()):
        assert comfyui_finds(tmp_path, path.stem) == path
        [c] = load_concepts(path)
        assert torch.equal(c.vectors, comfyui_reads(path)), path.name
        assert c.token == ("<diffusers-word>" if path.suffix == ".bin" else path.stem), path.name


def test_comfyui_reads_each_sdxl_part_with_its_encoders_key(tmp_path):
    c = sdxl_word()
    path = save_for_tool(c, tmp_path / "xl", "comfyui")
    assert torch.equal(comfyui_reads(path, "clip_l"), c.parts["clip_l"])
    assert torch.equal(comfyui_reads(path, "clip_g"), c.parts["clip_g"])


# ----------------------------------------------------------------------------------------- InvokeAI
# invoke-ai/InvokeAI
#   invokeai/backend/model_manager/model_on_disk.py @ 0cd77443a7852792e1280de2c82084240485b81d, load_state_dict:
#     .pt/.bin/.ckpt: picklescan, then torch.load; .safetensors: load_file; a 'state_dict' entry is unwrapped.
#   invokeai/backend/model_manager/configs/textual_inversion.py @ 9faffe93f9a87409ed6b846c1fecdda51821a62b:
#     _file_looks_like_embedding (learned_embeds.* by name; 'string_to_param'/'emb_params'/'clip_g' keys; or
#     fewer than 10 tensors) and _get_base_or_raise: the token width is 'string_to_param''s first value's
#     shape[-1] when 'string_to_token' is present, 'emb_params'.shape[-1], 'clip_g'.shape[-1], else the FIRST
#     VALUE'S shape[0]; 768 -> SD1, 1024 -> SD2, 1280 -> SDXL, anything else is not a match.
#   invokeai/backend/textual_inversion.py @ 1d449097cca8f79a99edf2f9d0df980229895c65,
#     TextualInversionModelRaw.from_checkpoint: string_to_param / emb_params / clip_g + clip_l / first value.
def invokeai_state_dict(path: Path) -> dict:
    sd = safetensors.torch.load_file(path) if path.suffix == ".safetensors" else plain_torch_load(path)
    return sd.get("state_dict", sd)


def invokeai_probe(path: Path) -> str:
    sd = invokeai_state_dict(path)
    looks = (
        path.name.startswith("learned_embeds.")
        or bool({"string_to_param", "emb_params", "clip_g"} & set(sd))
        or (len(sd) < 10 and all(isinstance(v, torch.Tensor) for v in sd.values()))
    )
    assert looks, f"InvokeAI: {path.name} does not look like an embedding"
    if "string_to_token" in sd:
        dim = list(sd["string_to_param"].values())[0].shape[-1]
    elif "emb_params" in sd:
        dim = sd["emb_params"].shape[-1]
    elif "clip_g" in sd:
        dim = sd["clip_g"].shape[-1]
    else:
        dim = list(sd.values())[0].shape[0]
    bases = {768: "sd-1", 1024: "sd-2", 1280: "sdxl"}
    assert dim in bases, f"InvokeAI: unrecognized token dimension {dim}"
    return bases[dim]


def invokeai_loads(path: Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    sd = invokeai_state_dict(path)
    if "string_to_param" in sd:
        return next(iter(sd["string_to_param"].values())), None
    if "emb_params" in sd:
        return sd["emb_params"], None
    if "clip_g" in sd and "clip_l" in sd:
        return sd["clip_g"], sd["clip_l"]
    emb = next(iter(sd.values()))
    return (emb.unsqueeze(0) if emb.dim() == 1 else emb), None


@pytest.mark.parametrize("n", [1, 3])
def test_invokeai_probe_accepts_the_file_convert_writes_for_it(tmp_path, n):
    for dim, base in ((768, "sd-1"), (1024, "sd-2")):
        c = word(n, dim)
        path = save_for_tool(c, tmp_path / f"w{dim}" / "my-cat", "invokeai")
        assert invokeai_probe(path) == base
        emb, emb2 = invokeai_loads(path)
        assert torch.equal(emb, c.vectors) and emb2 is None
    c = sdxl_word()
    path = save_for_tool(c, tmp_path / "xl", "invokeai")
    assert invokeai_probe(path) == "sdxl"
    emb, emb2 = invokeai_loads(path)
    assert torch.equal(emb, c.parts["clip_g"]) and torch.equal(emb2, c.parts["clip_l"])


def test_invokeai_probe_misreads_the_diffusers_layout(tmp_path):
    """Why learn's diffusers-layout file is not the one to give InvokeAI (docs/compatibility.md): its probe
    takes shape[0] of a {token: [n, 768]} file as the width. The A1111 .pt passes (it has string_to_token)."""
    files = every_file(tmp_path, word(3))
    with pytest.raises(AssertionError, match="unrecognized token dimension 3"):
        invokeai_probe(files["learn"])
    assert invokeai_probe(files["a1111.pt"]) == "sd-1"


# -------------------------------------------------------------------------------------------- kohya
# kohya-ss/sd-scripts @ 48d368fa557731ad0488c07304dfeba8c07910eb
#   gen_img.py (--textual_inversion_embeddings) and sdxl_gen_img.py: .safetensors through load_file, else
#     torch.load; 'string_to_param' is unwrapped; SD1/2: the first value, SDXL: 'clip_l' and 'clip_g';
#     the vector count is size()[0] (a 1-D tensor would count its width); the word is the file's stem
#     (vector i > 0 is stem + str(i)).
#   train_textual_inversion.py: save_weights writes {"emb_params": ...} as .safetensors or torch.save .pt;
#     load_weights reads the first value (1-D unsqueezed). sdxl_train_textual_inversion.py: {"clip_l", "clip_g"}.
def kohya_reads(path: Path, sdxl=False):
    data = safetensors.torch.load_file(path) if path.suffix == ".safetensors" else plain_torch_load(path)
    if "string_to_param" in data:
        data = data["string_to_param"]
    if sdxl:
        e1, e2 = data["clip_l"], data["clip_g"]
    else:
        e1, e2 = next(iter(data.values())), None
    token = path.stem
    return [token] + [f"{token}{i + 1}" for i in range(e1.size()[0] - 1)], e1, e2


@pytest.mark.parametrize("n", [1, 3])
def test_kohya_reads_every_file_oneword_writes(tmp_path, n):
    c = word(n)
    for what, path in every_file(tmp_path, c).items():
        tokens, e1, _ = kohya_reads(path)
        assert len(tokens) == n and tokens[0] == path.stem, what
        assert torch.equal(e1.float(), c.vectors), what
    c = sdxl_word()
    tokens, e1, e2 = kohya_reads(save_for_tool(c, tmp_path / "xl", "kohya"), sdxl=True)
    assert tokens == ["xl", "xl1"] and torch.equal(e1, c.parts["clip_l"]) and torch.equal(e2, c.parts["clip_g"])


def test_kohya_pt_files_are_named_after_the_file_as_kohya_names_them(tmp_path):
    """kohya's .pt ({"emb_params"} through torch.save) is the word named after its file, like its
    .safetensors twin: two of them in one prompt are two words, not two 'emb_params'."""
    a, b = torch.randn(2, W), torch.randn(1, W)
    torch.save({"emb_params": a}, tmp_path / "cat-toy.pt")
    torch.save({"emb_params": b}, tmp_path / "teapot.pt")
    safetensors.torch.save_file({"emb_params": a}, tmp_path / "cat-toy-st.safetensors")
    [ca], [cb] = load_concepts(tmp_path / "cat-toy.pt"), load_concepts(tmp_path / "teapot.pt")
    assert (ca.token, cb.token) == ("cat-toy", "teapot")
    assert kohya_reads(tmp_path / "cat-toy.pt")[0][0] == ca.token
    assert torch.equal(ca.vectors, a) and torch.equal(cb.vectors, b)
    assert load_concepts(tmp_path / "cat-toy-st.safetensors")[0].token == "cat-toy-st"
    torch.save({"clip_l": torch.randn(2, 768), "clip_g": torch.randn(2, 1280)}, tmp_path / "xl-style.pt")
    [xl] = load_concepts(tmp_path / "xl-style.pt")
    assert xl.token == "xl-style" and xl.parts["clip_g"].shape == (2, 1280)


# --------------------------------------------------------------------------------------- OneTrainer
# Nerogar/OneTrainer @ 23df3832e8f213d64c337e39f9365ba46e99fed0
#   modules/modelLoader/mixin/EmbeddingLoaderMixin.py: torch.load(weights_only=True), failing that load_file.
#   modules/modelSetup/BaseStableDiffusionSetup.py (_setup_embeddings): SD1.x/2.x take 'emp_params_out',
#     else 'emp_params' (its spelling); any other key leaves nothing to load.
#   modules/modelSetup/BaseStableDiffusionXLSetup.py: 'clip_l_out' or 'clip_l', 'clip_g_out' or 'clip_g'.
#   modules/modelSaver/stableDiffusion/StableDiffusionEmbeddingSaver.py: writes 'emp_params' ('_out' for
#     output embeddings, which act after the text encoder).
def onetrainer_reads(path: Path, sdxl=False):
    try:
        sd = torch.load(path, weights_only=True)
    except Exception:
        sd = safetensors.torch.load_file(path)
    if sdxl:
        return sd.get("clip_l_out", sd.get("clip_l")), sd.get("clip_g_out", sd.get("clip_g"))
    return sd.get("emp_params_out", sd.get("emp_params"))


def test_onetrainer_reads_the_file_convert_writes_for_it(tmp_path):
    c = word(3)
    got = onetrainer_reads(save_for_tool(c, tmp_path / "my-cat", "onetrainer"))
    assert got is not None and torch.equal(got, c.vectors)
    assert onetrainer_reads(every_file(tmp_path, c)["learn"]) is None  # the diffusers layout: nothing
    c = sdxl_word()
    l, g = onetrainer_reads(save_for_tool(c, tmp_path / "xl", "onetrainer"), sdxl=True)
    assert torch.equal(l, c.parts["clip_l"]) and torch.equal(g, c.parts["clip_g"])


def test_oneword_reads_onetrainers_files(tmp_path):
    v = torch.randn(2, W)
    safetensors.torch.save_file({"emp_params": v}, tmp_path / "ot-word.safetensors")
    [c] = load_concepts(tmp_path / "ot-word.safetensors")
    assert c.token == "ot-word" and torch.equal(c.vectors, v)
    safetensors.torch.save_file({"emp_params": v, "emp_params_out": v.clone()}, tmp_path / "out.safetensors")
    with pytest.raises(OnewordError, match="output embeddings"):
        load_concepts(tmp_path / "out.safetensors")


# ---------------------------------------------------------------------------------------- diffusers
# diffusers (this environment's, run for real): TextualInversionLoaderMixin.load_textual_inversion. A
# one-key dict names the word by its key; an A1111 record by its 'name'; a tensor needs token=.
def _pipe(tiny_dir):
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging as dlog

    dlog.set_verbosity_error()
    return StableDiffusionPipeline.from_pretrained(tiny_dir, safety_checker=None, requires_safety_checker=False)


def test_diffusers_loads_the_file_convert_writes_for_it(tmp_path, tiny_dir):
    """The real loader on the tiny pipeline (text width 32): what --for diffusers writes (layout and extension
    from TOOLS; its width check aside), learn's file and the emb_params file with token=."""
    c = word(3, dim=32)
    layout, ext = TOOLS["diffusers"][1:]
    assert (layout, ext) == ("diffusers", ".safetensors")
    files = {
        "for diffusers": save_concept(c, tmp_path / "d" / ("my-cat" + ext), layout),
        "learn": save_concept(c, tmp_path / "learned_embeds.safetensors"),
        "bin": save_concept(c, tmp_path / "my-cat.bin"),
        "a1111.pt": save_concept(c, tmp_path / "a.pt"),
    }
    for what, path in files.items():
        pipe = _pipe(tiny_dir)
        pipe.load_textual_inversion(str(path))
        ids = pipe.tokenizer.convert_tokens_to_ids(c.tokens)
        assert torch.equal(pipe.text_encoder.get_input_embeddings().weight[ids], c.vectors), what
    pipe = _pipe(tiny_dir)
    pipe.load_textual_inversion(str(save_concept(c, tmp_path / "k.safetensors", "kohya")), token="<my-cat>")
    assert torch.equal(
        pipe.text_encoder.get_input_embeddings().weight[pipe.tokenizer.convert_tokens_to_ids(c.tokens)], c.vectors
    )


# ------------------------------------------------------------------------------------ convert --for
def test_convert_for_each_tool_picks_layout_and_extension(tmp_path, capsys):
    from oneword import commands
    from oneword.commands import convert

    assert tuple(convert._USE) == tuple(TOOLS)  # the CLI's list (no torch at --help) is the library's
    src = save_concept(word(2), tmp_path / "learned_embeds.safetensors")
    keys = {"diffusers": ["<my-cat>"], "onetrainer": ["emp_params"]}
    for tool in TOOLS:
        assert commands.main(["convert", str(src), str(tmp_path / tool / "my-cat"), "--for", tool]) == 0
        out = tmp_path / tool / "my-cat.safetensors"
        assert list(safetensors.torch.load_file(out)) == keys.get(tool, ["emb_params"]), tool
        [back] = load_concepts(out)
        assert torch.equal(back.vectors, word(2).vectors) and back.token == "<my-cat>"  # from the metadata
        msg = capsys.readouterr().out
        assert msg.startswith(f"wrote {out}") and TOOLS[tool][0] in msg
    commands.main(["convert", str(src), str(tmp_path / "c.safetensors"), "--for", "comfyui"])
    assert "write embedding:c in the prompt" in capsys.readouterr().out


def test_convert_for_refuses_what_the_tool_cannot_load(tmp_path, capsys):
    from oneword import commands

    src = save_concept(word(2), tmp_path / "w.safetensors")
    assert commands.main(["convert", str(src), str(tmp_path / "my-cat.pt"), "--for", "invokeai"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "InvokeAI takes a .safetensors file" in err and "my-cat.safetensors" in err
    assert not (tmp_path / "my-cat.pt").exists()
    small = save_concept(word(2, dim=32), tmp_path / "world.safetensors")
    assert commands.main(["convert", str(small), str(tmp_path / "x"), "--for", "comfyui"]) == 2
    assert "works only in oneword" in capsys.readouterr().err
    for bad in (["--for", "kohya", "--format", "kohya"], ["--for", "photoshop"]):  # exclusive; known tools only
        try:
            code = commands.main(["convert", str(src), str(tmp_path / "y"), *bad])
        except SystemExit as e:  # argparse's own exit, where the parser does not return the code
            code = e.code
        assert code == 2 and not list(tmp_path.glob("y*")), bad
    # a name with a dot but no embedding extension gets the tool's extension added
    assert commands.main(["convert", str(src), str(tmp_path / "my.cat"), "--for", "kohya"]) == 0
    assert (tmp_path / "my.cat.safetensors").is_file()


# --------------------------------------------------------------------------------------- file modes
@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_new_files_get_the_umasks_mode(tmp_path, umask, mode):
    """Every file oneword writes is created as open() creates it: 0666 less the umask (a web UI running as
    another user can read the words, images and run.json when the umask lets it)."""
    from PIL import Image

    from oneword.safeio import atomic_save_image, atomic_write_json

    old = os.umask(umask)
    try:
        files = [
            save_concept(word(1), tmp_path / "w.safetensors"),
            save_concept(word(1), tmp_path / "w.pt"),
            atomic_write_json(tmp_path / "run.json", {"a": 1}),
            atomic_save_image(tmp_path / "i.png", Image.new("RGB", (4, 4))),
        ]
    finally:
        os.umask(old)
    for f in files:
        assert os.stat(f).st_mode & 0o777 == mode, f


def test_a_replaced_file_keeps_its_mode(tmp_path):
    path = save_concept(word(1), tmp_path / "w.safetensors")
    for mode in (0o640, 0o604):
        os.chmod(path, mode)
        save_concept(word(2), path)
        assert os.stat(path).st_mode & 0o777 == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]
