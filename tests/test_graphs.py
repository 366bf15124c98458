"""CUDA graphs never change the method: a graphed step computes what the eager step computes.

The CUDA tests run where a GPU is (benchmarks/gpu_session.sh runs this file there); on a CPU only the eager
runner's contract is checked."""

import json
import warnings

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from oneword.cuda_graph import Eager, loss_runner
from oneword.invert import LearnConfig, draw_batch, init_vectors, learn

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
REAL_DRAW_BATCH = draw_batch  # the loop's, before any test patches it


def quadratic(weight):
    return lambda x: ((x @ weight) ** 2).mean()


def ring_config(**settings) -> LearnConfig:
    """The learning runs of these tests: <teal-ring> from "ring", batch 2, early stopping on, no checkpoints."""
    return LearnConfig(token="<teal-ring>", init="ring", batch_size=2, early_stop=True, save_every=1000, **settings)


def count_at_each_draw(monkeypatch, count) -> list[int]:
    """Patch the loop's draw_batch (one call per step) to note count() at each call; the list it fills is
    steps_between's input."""
    import oneword.invert as inv

    starts, real_draw = [], REAL_DRAW_BATCH
    monkeypatch.setattr(inv, "draw_batch", lambda *a, **k: starts.append(count()) or real_draw(*a, **k))
    return starts


def test_eager_runner_replaces_the_gradient_instead_of_accumulating():
    w = torch.nn.Parameter(torch.randn(3, 2))
    run = Eager(quadratic(w), [w])
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    run(x=a)
    run(x=b)
    (expected,) = torch.autograd.grad(quadratic(w)(b), [w])
    assert torch.equal(w.grad, expected)


def test_the_agreement_check_accepts_the_same_overflow_and_rejects_real_differences():
    """An fp16 step whose scaled gradient overflows must overflow alike in the replay; finite values within 1%."""
    from oneword.cuda_graph import _close

    inf = float("inf")
    assert _close(torch.tensor([1.0, inf, 2.0]), torch.tensor([1.0, inf, 2.001]), 1e-2)
    assert not _close(torch.tensor([1.0, inf, 2.0]), torch.tensor([1.0, 3.0, 2.0]), 1e-2)
    assert not _close(torch.tensor([1.0, 2.0]), torch.tensor([1.5, 2.0]), 1e-2)


@cuda
def test_graphed_runner_replays_new_inputs_and_replaces_the_gradient():
    w = torch.nn.Parameter(torch.randn(3, 2, device="cuda"))
    a, b = (torch.randn(4, 3, device="cuda") for _ in range(2))
    run = loss_runner(quadratic(w), [w], {"x": a}, graph=True)
    assert run.kind == "cuda-graph"
    run(x=a)
    loss = run(x=b)
    (expected,) = torch.autograd.grad(quadratic(w)(b), [w])
    assert torch.allclose(w.grad, expected, rtol=1e-5, atol=1e-7)
    assert torch.allclose(loss, quadratic(w)(b))
    with torch.no_grad():
        w.add_(1.0)  # an optimiser's in-place update: the graph reads the parameter's new values
    run(x=b)
    (expected,) = torch.autograd.grad(quadratic(w)(b), [w])
    assert torch.allclose(w.grad, expected, rtol=1e-5, atol=1e-7)


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_learning_with_a_graph_follows_the_eager_run(tiny_dir, photos, tmp_path, dtype):
    """`learn` on the GPU, 30 steps with early stopping (graphed validation too), graph vs eager: the same
    trajectory within float tolerance, and run.json says which engine ran (fp16: GradScaler inside the graph)."""
    from oneword.models import load_model

    model = load_model(str(tiny_dir), device="cuda", dtype=dtype)
    runs = {}
    for graph in (True, False):
        cfg = ring_config(
            steps=30, lr=5e-3, seed=0, val_every=5, val_window=4, min_steps=1000, val_samples=5, cuda_graph=graph
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            concept = learn(model, photos, cfg, tmp_path / str(graph), progress=False)
        fallbacks = [str(w.message) for w in caught if "CUDA graph not used" in str(w.message)]
        assert not fallbacks, fallbacks  # a silent fallback to eager (step or validation) would make this vacuous
        runs[graph] = concept.vectors, json.loads((tmp_path / str(graph) / "run.json").read_text())
    (v_graph, run_graph), (v_eager, run_eager) = runs[True], runs[False]
    assert run_graph["engine"]["step"] == "cuda-graph" and run_eager["engine"]["step"] == "eager"
    assert run_graph["engine"]["validation"] == "cuda-graph+eager"  # 5 samples in chunks of 2: 2, 2 graphed; 1 eager
    assert run_eager["engine"]["validation"] == "eager"
    moved = (v_eager - init_vectors(model, "ring", 1)).norm()
    tol = 1e-3 if dtype == torch.float32 else 2e-2  # atomics in the embedding backward: not bit-exact
    assert moved > 0.05 * v_eager.norm(), moved  # it learned, so the comparison is not of two unmoved vectors
    assert (v_graph - v_eager).norm() <= tol * moved, ((v_graph - v_eager).norm(), moved)
    val_graph, val_eager = (r["early_stopping"]["val_losses"] for r in (run_graph, run_eager))
    assert len(val_graph) == len(val_eager) == 6
    assert val_graph == pytest.approx(val_eager, rel=10 * tol)


@cuda
def test_the_loop_never_waits_for_the_gpu_between_check_points(tiny_dir, photos, tmp_path, monkeypatch):
    """On the GPU, torch's sync debug mode flags every synchronising call (item(), a blocking copy, a stream
    sync): none between check points, graphed or eager, including the batch's host-to-device copy."""
    from oneword.models import load_model

    model = load_model(str(tiny_dir), device="cuda")
    for graph in (True, False):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            starts = count_at_each_draw(monkeypatch, lambda: sum("synchroniz" in str(w.message) for w in caught))
            cfg = ring_config(steps=12, val_every=4, val_samples=2, min_steps=1000, cuda_graph=graph)
            torch.cuda.set_sync_debug_mode("warn")
            try:
                learn(model, photos, cfg, tmp_path / str(graph), progress=False)
            finally:
                torch.cuda.set_sync_debug_mode(0)
        per_step = steps_between(starts)
        # the eager run's first step is the first use of each convolution shape, where cuDNN may time its algorithms
        # (learn turns its autotuning on for CUDA); the graphed run did that before its loop, at capture
        one_off = set() if graph else {1}
        assert {s for s, n in per_step.items() if n} - one_off == {4, 8}, (graph, per_step)


def test_the_noise_schedule_starts_on_the_models_device():
    """diffusers' add_noise moves alphas_cumprod to the latents' device on its first call: on a GPU a blocking copy
    inside the first eager step, which the sync test above would flag. So `learn` puts it there first."""
    from types import SimpleNamespace

    from diffusers import DDPMScheduler

    from oneword.invert import _training_schedule

    model = SimpleNamespace(scheduler=DDPMScheduler(), device=torch.device("meta"))
    assert _training_schedule(model).alphas_cumprod.device.type == "meta"


def test_cudnn_autotuning_is_on_for_cuda_learning_only_and_then_restored():
    from oneword.invert import _tuned_kernels

    before = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = False
        for device, inside in (("cuda", True), ("cpu", False)):
            with _tuned_kernels(torch.device(device)):
                assert torch.backends.cudnn.benchmark is inside
            assert torch.backends.cudnn.benchmark is False
    finally:
        torch.backends.cudnn.benchmark = before


@cuda
def test_encoding_the_photos_leaves_no_cached_blocks_behind(tiny_dir, photos):
    """The VAE's activations are released after encoding, not held by the caching allocator through the run
    (an eager batch-4 step on SD1.5 held 7.90 GiB with 5.14 GiB allocated at its peak: docs/benchmarks.md)."""
    from oneword.data import encode_photos, read_photos
    from oneword.models import load_model

    model = load_model(str(tiny_dir), device="cuda")
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    reserved, allocated = torch.cuda.memory_reserved(), torch.cuda.memory_allocated()
    cache = encode_photos(model, read_photos(photos), 128)  # 8 images: 2 MiB per bf16 encoder activation
    # the encoder did allocate blocks over 1 MiB, which the allocator serves from segments of 20 MiB
    assert torch.cuda.max_memory_allocated() - allocated > 4 * 2**20
    # what stays: the latents' fp32 mean and std (0.5 MiB each) in the small-block segments of 2 MiB
    assert cache.mean.is_cuda and torch.cuda.memory_reserved() - reserved <= 4 * 2**20


@cuda  # the last CUDA test: a failed capture must not disturb the tests before it
def test_a_step_that_cannot_be_captured_falls_back_to_eager_with_a_warning():
    w = torch.nn.Parameter(torch.randn(3, 2, device="cuda"))

    def syncs(x):
        loss = ((x @ w) ** 2).mean()
        return loss * 2 if loss.item() > 0 else loss  # a host sync: not capturable

    x = torch.randn(4, 3, device="cuda")
    with pytest.warns(UserWarning, match="CUDA graph not used"):
        run = loss_runner(syncs, [w], {"x": x}, graph=True)
    assert run.kind == "eager"
    run(x=x)
    (expected,) = torch.autograd.grad(syncs(x), [w])
    assert torch.allclose(w.grad, expected)


# ---- on any machine: the captured functions contain no operation that needs the host (what capture forbids)

SYNCING_OPS = {
    "aten::_local_scalar_dense",
    "aten::nonzero",
    "aten::masked_select",
    "aten::unique_dim",
    "aten::_unique2",
    "aten::equal",
    "aten::is_nonzero",
}


class Ops(TorchDispatchMode):
    """Notes the name of every ATen operation run under it."""

    def __init__(self):
        super().__init__()
        self.names = set()

    def note(self, name: str) -> None:
        self.names.add(name)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.note(func._schema.name)
        return func(*args, **(kwargs or {}))


def ops_of(fn, params, example, scale=None, backward=True) -> set:
    """Every ATen operation of fn's forward (and backward) on `example`."""
    with Ops() as ops:
        loss = fn(**example)
        if backward:
            torch.autograd.grad((scale or (lambda x: x))(loss), params)
    return ops.names


def test_the_step_and_validation_functions_never_sync_with_the_host(tiny_model, photos, tmp_path, monkeypatch):
    """A CUDA graph cannot contain a host sync (.item(), bool(tensor), nonzero...): the functions `learn` hands to
    loss_runner are run here on the CPU under a dispatch mode that records every operation, forward and backward."""
    import oneword.early_stopping
    import oneword.invert

    seen = []
    real = oneword.invert.loss_runner

    def recording(fn, params, example, **kw):  # checked here, while learn's word is installed in the model
        backward = kw.get("backward", True)
        seen.append((backward, ops_of(fn, params, example, kw.get("scale"), backward)))
        return real(fn, params, example, **kw)

    monkeypatch.setattr(oneword.invert, "loss_runner", recording)  # the training step's runner
    monkeypatch.setattr(oneword.early_stopping, "loss_runner", recording)  # the validation batch's
    cfg = ring_config(steps=2, val_every=1, val_samples=4, reg_weight=0.01)
    learn(tiny_model, photos, cfg, tmp_path / "run", progress=False)
    assert [backward for backward, _ in seen] == [True, False]  # the training step, then a validation chunk
    (_, step_ops), (_, validation_ops) = seen
    assert "aten::convolution_backward" in step_ops and "aten::convolution" in validation_ops  # the UNet ran
    assert not step_ops & SYNCING_OPS and not validation_ops & SYNCING_OPS
    # the check is not vacuous: a step that reads its loss on the host is caught
    w = torch.nn.Parameter(torch.randn(3, 2))
    assert ops_of(
        lambda x: ((x @ w) ** 2).mean() * (2 if float(x.sum()) > 0 else 1), [w], {"x": torch.randn(4, 3)}
    ) & SYNCING_OPS == {"aten::_local_scalar_dense"}


def steps_between(starts: list[int]) -> dict[int, int]:
    """{step: reads during it} from the read count at each draw_batch call (the first draws the runner's example)."""
    loop = starts[1:]
    return {i: b - a for i, (a, b) in enumerate(zip(loop, loop[1:]), start=1)}


class HostReads(Ops):
    """Counts operations that read a tensor's value on the host, except AdamW.step's read of its own step count:
    on the CPU torch keeps that count on the host; on CUDA `learn` makes AdamW capturable (the count on the GPU)."""

    def __init__(self):
        super().__init__()
        self.count, self.in_optimizer = 0, False

    def note(self, name: str) -> None:
        if name in SYNCING_OPS and not self.in_optimizer:
            self.count += 1


def test_the_loop_reads_values_on_the_host_only_at_its_check_points(tiny_model, photos, tmp_path, monkeypatch):
    """A GPU waits for Python whenever the host reads a device value: between check points (here every 4 steps:
    validation and the progress bar's loss) no step may read one, including the non-finite-step guard, which
    decides on the device. Reads are attributed to steps by the loop's one draw_batch call per step."""
    reads, real_step = HostReads(), torch.optim.AdamW.step

    def adamw_step(self, *a, **k):
        reads.in_optimizer = True
        try:
            return real_step(self, *a, **k)
        finally:
            reads.in_optimizer = False

    starts = count_at_each_draw(monkeypatch, lambda: reads.count)
    monkeypatch.setattr(torch.optim.AdamW, "step", adamw_step)
    cfg = ring_config(steps=12, val_every=4, val_samples=2, min_steps=1000)
    with reads:
        learn(tiny_model, photos, cfg, tmp_path / "run", progress=True)
    per_step = steps_between(starts)
    assert {s for s, n in per_step.items() if n} == {4, 8}, per_step  # the check points read; no other step does
