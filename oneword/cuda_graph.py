"""One loss (and its gradient) per call, run eagerly or replayed from a CUDA graph.

An SD1.5 step at batch 4 issues ~8,300 ATen operations; on an H200 ~90 of its 104 ms are host time spent
launching them (docs/benchmarks.md). Captured once as a CUDA graph, the forward and backward pass become one
launch. The method does not change: the graph replays the kernels of an eager step on inputs copied into
fixed buffers, and `loss_runner` checks one replay against an eager step before using it (and falls back to
eager, with a warning, if capture fails or the two disagree).

Contract of a runner `run(**inputs) -> loss`: inputs are tensors of fixed shapes; with backward=True, after the
call every parameter's .grad holds this call's gradient of scale(loss) (replacing the previous one, never
accumulating). A graphed runner owns those .grad tensors: callers must not set them to None.
"""

from __future__ import annotations

import time
import warnings

import torch


class Eager:
    def __init__(self, fn, params, scale=None, backward=True):
        self.fn, self.params, self.backward = fn, list(params), backward
        self.scale = scale or (lambda loss: loss)
        self.kind, self.setup_s = "eager", 0.0

    def __call__(self, **inputs) -> torch.Tensor:
        loss = self.fn(**inputs)
        if self.backward:
            for p in self.params:
                p.grad = None
            self.scale(loss).backward()
        return loss


class Graphed(Eager):
    """`Eager`'s work captured once (after warm-up steps on a side stream, as torch.cuda.graph requires) and
    replayed: one launch per call instead of thousands."""

    def __init__(self, fn, params, example: dict, scale=None, backward=True, warmup: int = 2):
        super().__init__(fn, params, scale, backward)
        started = time.perf_counter()
        self.inputs = {k: v.detach().clone() for k, v in example.items()}
        self.device = next(iter(self.inputs.values())).device  # streams and graphs belong to one device
        with torch.cuda.device(self.device):
            self._capture(warmup)
        self.kind, self.setup_s = "cuda-graph", time.perf_counter() - started

    def _capture(self, warmup: int) -> None:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # lazy initialisation (cuBLAS handles, device copies) happens here
            for _ in range(warmup):
                Eager.__call__(self, **self.inputs)
        torch.cuda.current_stream().wait_stream(side)
        for p in self.params:
            p.grad = None  # allocated inside the graph's memory pool at capture: the replayed backward writes it
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.loss = self.fn(**self.inputs)
            if self.backward:
                self.scale(self.loss).backward()
        torch.cuda.synchronize()

    def __call__(self, **inputs) -> torch.Tensor:
        with torch.cuda.device(self.device):
            for k, v in inputs.items():
                self.inputs[k].copy_(v, non_blocking=True)
            self.graph.replay()
        return self.loss


def eager_result(fn, params, example: dict, scale=None, backward=True) -> list[torch.Tensor]:
    """Loss and gradients of one eager computation, leaving every .grad as it was."""
    loss = fn(**example)
    grads = torch.autograd.grad((scale or (lambda x: x))(loss), params) if backward else ()
    return [loss.detach().clone(), *grads]


def agrees(graphed: Graphed, example: dict, reference: list[torch.Tensor], rtol: float = 1e-2) -> bool:
    """One replay against an eager result on the same inputs: loss and gradients within rtol."""
    replayed = [graphed(**example)] + ([p.grad for p in graphed.params] if graphed.backward else [])
    return all(_close(a, b, rtol) for a, b in zip(replayed, reference))


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float) -> bool:
    """Equal where non-finite (an fp16 step whose scaled gradient overflows must overflow in both), close elsewhere."""
    finite = torch.isfinite(b)
    if not torch.equal(torch.isfinite(a), finite):
        return False
    a, b = (torch.where(finite, t.detach().float(), 0.0) for t in (a, b))
    return float((a - b).norm()) <= rtol * float(b.norm()) + 1e-12


def loss_runner(fn, params, example: dict, *, scale=None, backward=True, graph=False):
    """A Graphed runner when `graph` (CUDA only) and it captures and agrees with eager; otherwise Eager."""
    if graph:
        try:
            # the eager reference first, its cached blocks released before the warm-up (on another stream, which
            # could not reuse them) and the capture (torch.cuda.graph empties the cache again): the device never
            # holds two steps' activations at once
            reference = eager_result(fn, params, example, scale, backward)
            torch.cuda.empty_cache()
            graphed = Graphed(fn, params, example, scale, backward)
            if agrees(graphed, example, reference):
                return graphed
            reason = "its replay disagreed with an eager step"
        except RuntimeError as e:  # an operation that cannot be captured (a host sync, a CPU copy)
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        warnings.warn(f"CUDA graph not used ({reason}); running eagerly (slower, same result)", stacklevel=2)
        for p in params:
            p.grad = None
    return Eager(fn, params, scale, backward)
