"""SD2.x at its real architecture (random weights): the 768-v (v-prediction) and 512 base configurations, loaded
from one full-size single-file checkpoint offline, each learn a step and sample a step. Small images (64 px:
8x8 latents) keep it quick; every layer of the full UNet (865M parameters), OpenCLIP ViT-H text tower and VAE
runs, forward and backward."""

import json

import pytest
import torch

from oneword.invert import LearnConfig, init_vectors, learn
from oneword.models import load_model
from oneword.sampling import generate
from oneword.tiny_models import count_params, random_checkpoint_tensors, random_weight


def small_weight(component, key, shape):
    """random_weight scaled to 0.02 (as trained networks' weights are small), so one step's loss is finite."""
    w = random_weight(component, key, shape)
    return w if key.endswith("position_ids") else w * 0.02


@pytest.fixture(scope="module")
def sd2_file(tmp_path_factory):
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("sd2-full") / "sd2.safetensors"
    tensors, _ = random_checkpoint_tensors("sd2", "full", weight=small_weight)
    save_file(tensors, str(path), metadata={"format": "pt"})
    del tensors
    yield path
    path.unlink()


@pytest.mark.parametrize("prediction,resolution", [("v_prediction", 768), ("epsilon", 512)])
def test_sd2_full_architecture_learns_and_samples(sd2_file, photos, tmp_path, prediction, resolution):
    model = load_model(sd2_file, device="cpu", prediction_type=prediction)  # 768-v or 512 base configs
    assert model.prediction_type == prediction
    assert model.resolution == resolution and model.hidden_size == 1024 and model.family.name == "sd"
    assert 865_000_000 < count_params(model.unet) < 866_000_000
    start = init_vectors(model, "ring", 1)
    cfg = LearnConfig(token="<r>", init="ring", steps=1, batch_size=1, resolution=64, early_stop=False, lr=0.01)
    concept = learn(model, photos, cfg, tmp_path / "run", progress=False)
    assert concept.vectors.shape == (1, 1024) and torch.isfinite(concept.vectors).all()
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["skipped_nonfinite_steps"] == 0 and run["model"]["prediction_type"] == prediction
    assert not torch.equal(concept.vectors, start)  # the step moved the word
    image = generate(model, "a photo of <r>", [concept], n=1, steps=1, height=64, width=64)[0]
    assert image.size == (64, 64)


def test_prediction_type_flag_reaches_the_single_file_loader(tmp_path):
    """`--prediction-type` overrides what an SD2.x single file says of itself (a small file of the same layout)."""
    from oneword.commands import build_parser
    from oneword.commands._common import load_model_from
    from oneword.tiny_models import write_random_checkpoint

    path = tmp_path / "sd2-small.safetensors"
    write_random_checkpoint(path, "sd2", size="small")
    for flag, expected in (([], "v_prediction"), (["--prediction-type", "epsilon"], "epsilon")):
        args = build_parser().parse_args(["generate", "a cat", "--model", str(path), "--device", "cpu", *flag])
        assert load_model_from(args).prediction_type == expected
