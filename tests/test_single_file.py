"""Single-file checkpoints in the web UIs' layout, loaded offline with no other argument; the tiny SDXL pipeline."""

import gc
import json
import socket
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

from oneword.errors import OnewordError
from oneword.models import load_model
from oneword.single_file import (
    Checkpoint,
    architecture,
    detect_family,
    load_single_file,
    prediction_type_of,
    read_checkpoint,
    shipped_config,
    write_config_folder,
    zero_terminal_snr,
)
from oneword.tiny_models import (
    checkpoint_configs,
    random_checkpoint_tensors,
    random_weight,
    write_random_checkpoint,
)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("the network was used")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def assert_weights_equal(pipe, shapes):
    """Every tensor of every component equals the fp16 source exactly (fp16 -> the loaded dtype is exact)."""
    for component, expected in shapes.items():
        state = getattr(pipe, component).state_dict()
        assert set(state) == set(expected), component
        for key, shape in expected.items():
            want = random_weight(component, key, shape)
            got = state[key]
            assert torch.equal(got, want.to(got.dtype)), f"{component}.{key}"


def load_quietly(*args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_model(*args, device="cpu", **kwargs)
    return model, [str(w.message) for w in caught]


@pytest.mark.parametrize(
    "family,width,resolution,prediction",
    [
        ("sd1", 768, 512, "epsilon"),  # SD1.5: UNet 860M, VAE 84M, CLIP ViT-L 123M parameters
        ("sd2", 1024, 768, "v_prediction"),  # SD2.x 768-v: UNet 866M, VAE 84M, OpenCLIP ViT-H 340M (+ unused layer)
    ],
)
def test_full_architecture_single_file_loads_offline_with_every_weight_exact(
    tmp_path, no_network, family, width, resolution, prediction
):
    path = tmp_path / f"{family}-finetune.safetensors"
    shapes = write_random_checkpoint(path, family, size="full")
    gc.collect()
    model, said = load_quietly(str(path))
    assert model.identity["kind"] == "single_file" and model.identity["pipeline"] == "StableDiffusionPipeline"
    assert (model.hidden_size, model.resolution, model.prediction_type) == (width, resolution, prediction)
    assert model.dtype == torch.float32
    assert_weights_equal(model.pipe, shapes)
    shipped = json.loads((shipped_config(family, prediction) / "unet" / "config.json").read_text())
    listed = lambda v: list(v) if isinstance(v, (list, tuple)) else v  # noqa: E731
    for key, value in shipped.items():
        if not key.startswith("_"):
            assert listed(model.unet.config[key]) == listed(value), key
    guessed = [m for m in said if "ComfyUI" in m]
    assert len(guessed) == (family == "sd2")  # SD2's kind is guessed from the weights, and it says so
    del model
    gc.collect()


def test_small_sdxl_single_file_loads_as_sdxl_with_every_weight_exact(tmp_path, no_network):
    path = tmp_path / "sdxl-small.safetensors"
    shapes = write_random_checkpoint(path, "sdxl")
    model, _ = load_quietly(str(path))
    pipe = model.pipe
    assert type(pipe).__name__ == "StableDiffusionXLPipeline"
    assert (pipe.text_encoder.config.hidden_size, pipe.text_encoder_2.config.hidden_size) == (64, 128)
    assert pipe.unet.config.addition_embed_type == "text_time"
    assert pipe.vae.config.scaling_factor == 0.13025 and pipe.tokenizer_2.pad_token == "!"
    assert_weights_equal(pipe, shapes)
    image = pipe(
        "a photo",
        num_inference_steps=1,
        height=64,
        width=64,
        output_type="np",
        generator=torch.Generator().manual_seed(0),
    ).images[0]
    assert image.shape == (64, 64, 3)


def test_ckpt_is_read_with_weights_only(tmp_path, no_network):
    path = tmp_path / "old.ckpt"
    shapes = write_random_checkpoint(path, "sd1")
    model, _ = load_quietly(str(path))
    assert_weights_equal(model.pipe, shapes)


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_full_architectures_read_back_as_the_shipped_configs(family):
    """The sizes read from a full-size file's shapes (meta tensors: no memory) give exactly the shipped models."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig

    meta = lambda component, key, shape: torch.empty(shape, dtype=torch.float16, device="meta")  # noqa: E731
    tensors, _ = random_checkpoint_tensors(family, "full", weight=meta)
    ck = Checkpoint(shipped_config(family) / f"{family}.safetensors", {k: tuple(v.shape) for k, v in tensors.items()})
    assert detect_family(ck) == family
    configs = checkpoint_configs(family, "full")
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    for component, read in architecture(ck, family).items():
        merged = {**configs[component], **read}
        if component == "unet":
            with torch.device("meta"):
                a, b = UNet2DConditionModel.from_config(configs[component]), UNet2DConditionModel.from_config(merged)
            assert public(a.config) == public(b.config)
        elif component == "vae":
            with torch.device("meta"):
                a, b = AutoencoderKL.from_config(configs[component]), AutoencoderKL.from_config(merged)
            assert public(a.config) == public(b.config)
        else:
            assert CLIPTextConfig(**merged).to_dict() == CLIPTextConfig(**configs[component]).to_dict()


def test_original_layout_names(tmp_path):
    """Spot checks against names every released SD1.5 / SDXL file has."""
    meta = lambda component, key, shape: torch.empty(shape, dtype=torch.float16, device="meta")  # noqa: E731
    sd1, _ = random_checkpoint_tensors("sd1", "full", weight=meta)
    for key, shape in {
        "model.diffusion_model.input_blocks.1.1.proj_in.weight": (320, 320, 1, 1),
        "model.diffusion_model.input_blocks.3.0.op.weight": (320, 320, 3, 3),
        "model.diffusion_model.output_blocks.2.1.conv.weight": (1280, 1280, 3, 3),
        "model.diffusion_model.output_blocks.5.2.conv.weight": (1280, 1280, 3, 3),
        "model.diffusion_model.middle_block.1.transformer_blocks.0.attn2.to_k.weight": (1280, 768),
        "model.diffusion_model.out.2.weight": (4, 320, 3, 3),
        "first_stage_model.encoder.mid.attn_1.q.weight": (512, 512, 1, 1),
        "first_stage_model.decoder.up.3.upsample.conv.weight": (512, 512, 3, 3),
        "first_stage_model.decoder.up.0.block.0.nin_shortcut.weight": (128, 256, 1, 1),
        "cond_stage_model.transformer.text_model.embeddings.position_ids": (1, 77),
        "cond_stage_model.transformer.text_model.final_layer_norm.weight": (768,),
    }.items():
        assert tuple(sd1[key].shape) == shape, key
    assert len(sd1) == 686 + 248 + 197  # UNet, VAE and CLIP tensors of a released SD1.5 file
    xl, _ = random_checkpoint_tensors("sdxl", "full", weight=meta)
    for key, shape in {
        "model.diffusion_model.label_emb.0.0.weight": (1280, 2816),
        "model.diffusion_model.input_blocks.7.1.transformer_blocks.9.attn1.to_q.weight": (1280, 1280),
        "conditioner.embedders.1.model.text_projection": (1280, 1280),
        "conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight": (3840, 1280),
        "conditioner.embedders.0.transformer.text_model.encoder.layers.11.mlp.fc2.weight": (768, 3072),
    }.items():
        assert tuple(xl[key].shape) == shape, key


def test_prediction_type_sources(tmp_path):
    base = tmp_path / "sd2-base.safetensors"
    write_random_checkpoint(base, "sd2", v_prediction_weights=False)
    v = tmp_path / "sd2-v.safetensors"
    write_random_checkpoint(v, "sd2")
    with pytest.warns(UserWarning, match="512 base .* as ComfyUI does"):
        assert prediction_type_of(read_checkpoint(base), "sd2") == ("epsilon", "guessed from the weights")
    with pytest.warns(UserWarning, match="768-v"):
        assert prediction_type_of(read_checkpoint(v), "sd2")[0] == "v_prediction"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a decision the file states is not a guess
        assert prediction_type_of(read_checkpoint(v), "sd2", "epsilon") == ("epsilon", "asked")
        for meta, want in (
            ({"modelspec.prediction_type": "epsilon"}, "epsilon"),
            ({"modelspec.architecture": "stable-diffusion-v2-768-v"}, "v_prediction"),
            ({"modelspec.architecture": "stable-diffusion-v2-512"}, "epsilon"),
        ):
            ck = read_checkpoint(base)
            ck.metadata = meta
            assert prediction_type_of(ck, "sd2")[0] == want, meta
        marked = tmp_path / "marked.safetensors"
        tensors = load_file(base)
        save_file({**tensors, "v_pred": torch.tensor([]), "ztsnr": torch.tensor([])}, marked)
        assert prediction_type_of(read_checkpoint(marked), "sd2")[0] == "v_prediction"
        assert zero_terminal_snr(read_checkpoint(marked)) and not zero_terminal_snr(read_checkpoint(base))
        base.with_suffix(".yaml").write_text('model:\n  params:\n    parameterization: "v"\n')
        assert prediction_type_of(read_checkpoint(base), "sd2") == ("v_prediction", "sd2-base.yaml beside it")


def test_prediction_type_override_picks_the_config(tmp_path, no_network):
    path = tmp_path / "sd2-v.safetensors"
    write_random_checkpoint(path, "sd2")
    pipe = load_single_file(path, {"torch_dtype": torch.float32}, prediction_type="epsilon")
    assert pipe.scheduler.config.prediction_type == "epsilon" and pipe.unet.config.sample_size == 64
    xl = tmp_path / "xl-vpred.safetensors"
    tensors, _ = random_checkpoint_tensors("sdxl")
    save_file({**tensors, "v_pred": torch.tensor([]), "ztsnr": torch.tensor([])}, xl)
    pipe = load_single_file(xl, {"torch_dtype": torch.float32})
    assert type(pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    assert pipe.scheduler.config.prediction_type == "v_prediction" and pipe.scheduler.config.rescale_betas_zero_snr


def test_model_config_override(tmp_path, no_network):
    path = tmp_path / "sd1.safetensors"
    shapes = write_random_checkpoint(path, "sd1")
    folder = write_config_folder("sd1", tmp_path / "config", overrides=architecture(read_checkpoint(path), "sd1"))
    model, _ = load_quietly(str(path), config=str(folder))
    assert_weights_equal(model.pipe, shapes)
    with pytest.raises(OnewordError, match="not in the local Hugging Face cache"):
        load_model(str(path), device="cpu", config="nobody/no-such-model")


def _small_sd1(tmp_path):
    path = tmp_path / "small.safetensors"
    write_random_checkpoint(path, "sd1")
    return load_file(path)


class NotATensor:
    pass


def _bad_files(tmp_path):
    """{name: (path, words the refusal must contain)}."""
    sd1 = _small_sd1(tmp_path)
    files = {}

    def st(name, tensors, *words):
        path = tmp_path / f"{name}.safetensors"
        save_file(tensors, path)
        files[name] = (path, words)

    def raw(name, data, *words, suffix=".safetensors"):
        path = tmp_path / f"{name}{suffix}"
        path.write_bytes(data)
        files[name] = (path, words)

    raw("empty", b"", "not a checkpoint")
    raw("text", b"hello, this is not a model\n" * 40, "not a safetensors file")
    raw("lfs", b"version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 2132625182\n", "Git LFS pointer")
    whole = (tmp_path / "small.safetensors").read_bytes()
    raw("cut", whole[: len(whole) * 2 // 3], "truncated")
    raw("cut-header", whole[:1000], "truncated")
    st("embedding", {"clip_l": torch.zeros(2, 768), "clip_g": torch.zeros(2, 1280)}, "embedding")
    st("lora", {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 320)}, "LoRA")
    st(
        "vae",
        {"encoder.down.0.block.0.conv1.weight": torch.zeros(1), "decoder.up.0.block.0.conv1.weight": torch.zeros(1)},
        "VAE alone",
    )
    st("flux", {"double_blocks.0.img_attn.norm.key_norm.scale": torch.zeros(128)}, "Flux", "not supported yet")
    st(
        "sd3",
        {"model.diffusion_model.joint_blocks.0.context_block.adaLN_modulation.1.bias": torch.zeros(9216)},
        "Stable Diffusion 3",
        "not supported yet",
    )
    xl, _ = random_checkpoint_tensors("sdxl")
    refiner = {
        k.replace("conditioner.embedders.1.", "conditioner.embedders.0."): v
        for k, v in xl.items()
        if not k.startswith("conditioner.embedders.0.")
    }
    st("refiner", refiner, "SDXL refiner")
    st(
        "inpainting",
        {**sd1, "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(32, 9, 3, 3)},
        "inpainting",
        "4 channels",
    )
    st("no-vae", {k: v for k, v in sd1.items() if not k.startswith("first_stage_model.")}, "no VAE")
    st("unet-only", {k: v for k, v in sd1.items() if k.startswith("model.diffusion_model.")}, "no text encoder")
    wide = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
    st("mismatch", {**sd1, wide: torch.zeros(49408, 96)}, "unknown model family", "width 64", "text encoder width 96")
    st(
        "missing",
        {k: v for k, v in sd1.items() if "output_blocks.1.0.in_layers" not in k},
        "lacks 4 UNet tensors",
        "output_blocks.1.0.in_layers",
    )
    torch.save({"state_dict": {"a": torch.zeros(1)}, "callbacks": NotATensor()}, tmp_path / "pickle.ckpt")
    files["pickle"] = (tmp_path / "pickle.ckpt", ("weights_only", ".safetensors"))
    torch.save({"state_dict": sd1}, tmp_path / "whole.ckpt")
    data = (tmp_path / "whole.ckpt").read_bytes()
    raw("cut-ckpt", data[: len(data) // 2], "truncated or another format", suffix=".ckpt")
    return files


def test_refusals_are_one_line_that_say_what_the_file_is(tmp_path, no_network):
    for name, (path, words) in _bad_files(tmp_path).items():
        with pytest.raises(OnewordError) as e:
            load_model(str(path), device="cpu")
        message = str(e.value)
        assert "\n" not in message, name
        for w in words:
            assert w in message, (name, message)


def test_tiny_sdxl_pipeline_generates_on_the_cpu(tmp_path):
    from diffusers import StableDiffusionXLPipeline

    from oneword.tiny_models import make_tiny_sdxl_pipeline

    make_tiny_sdxl_pipeline(tmp_path / "tiny-sdxl")
    pipe = StableDiffusionXLPipeline.from_pretrained(tmp_path / "tiny-sdxl", local_files_only=True)
    assert (pipe.text_encoder.config.hidden_size, pipe.text_encoder_2.config.hidden_size) == (768, 1280)
    assert pipe.text_encoder_2.config.projection_dim == 1280
    assert pipe.tokenizer("a photo").input_ids == [49406, 320, 1125, 49407]  # the real CLIP ids
    assert pipe.tokenizer_2("a photo").input_ids == [49406, 320, 1125, 49407]
    assert pipe.tokenizer.pad_token == "<|endoftext|>" and pipe.tokenizer_2.pad_token == "!"
    assert pipe.tokenizer_2.pad_token_id == 0
    image = pipe(
        "a photo of a cat", num_inference_steps=2, output_type="np", generator=torch.Generator().manual_seed(0)
    ).images[0]
    assert image.shape == (16, 16, 3) and float(abs(image).sum()) > 0
    assert torch.isfinite(torch.from_numpy(image)).all()
