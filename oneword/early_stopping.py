"""Early stopping: end learning when the loss on a fixed validation batch has stopped falling.

`ValidationBatch` is the signal: a fixed batch (every photo in turn, timesteps spread evenly over the schedule,
fixed noise, the templates in turn) whose loss is a low-noise measure of convergence, DVAR's fixed batch
(Voronov et al. 2023). `EarlyStopping` is the rule and its memory: stop when the least-squares slope of the last
`val_window` validation losses is no longer `val_z` standard errors below zero. DVAR's own rule (variance of the
recent values over the variance of all) stopped a style word whose loss was still falling steadily and let object
words run to the step cap (CHANGELOG.md, 2026-11-27). Its history is part of a run's checkpoint
(oneword.run), so a resumed run stops where the uninterrupted one would.
"""

from __future__ import annotations

import torch

from .cuda_graph import loss_runner


class ValidationBatch:
    """The fixed batch and its mean loss. `sample_loss(rows, posterior_noise, noise, timesteps, prompt_ids)` is the
    training loss on given samples (invert.learn's, with the word being learned installed)."""

    def __init__(
        self,
        cache,
        ids: torch.Tensor,
        cfg,
        n_train_steps: int,
        sample_loss,
        graph: bool = False,
        chunk: int | None = None,
    ):
        g = torch.Generator().manual_seed(cfg.seed + 7919)
        n = cfg.val_samples
        self.rows = torch.arange(n) % len(cache)
        low = cfg.val_t_min
        spread = n_train_steps * (low + round(0.95 - low, 6) * (torch.arange(n) + 0.5) / n)
        self.timesteps = spread.long()[torch.randperm(n, generator=g)]  # each photo sees several noise levels
        self.posterior_noise = torch.randn((n, *cache.mean.shape[1:]), generator=g)
        self.noise = torch.randn((n, *cache.mean.shape[1:]), generator=g)
        self.ids = ids[torch.arange(n) % len(ids)]
        self.sample_loss, self.graph, self.batch_size, self.runners = sample_loss, graph, cfg.batch_size, {}
        # on an accelerator in chunks of the training batch (no extra peak memory; the step's shape, so a CUDA
        # graph); on the CPU the whole batch at once (fewer, larger kernels: 16 world samples in 36 ms, not 61)
        self.chunk = chunk or (n if cache.mean.device.type == "cpu" else cfg.batch_size)
        self.device = cache.mean.device

    @torch.no_grad()
    def loss(self) -> float:
        """Mean loss over the fixed batch, in chunks (one host read per chunk)."""
        total = 0.0
        for part in torch.arange(len(self.rows)).split(self.chunk):
            chunk = {
                "rows": self.rows[part],
                "posterior_noise": self.posterior_noise[part],
                "noise": self.noise[part],
                "timesteps": self.timesteps[part],
                "prompt_ids": self.ids[part],
            }
            chunk = {k: v.to(self.device) for k, v in chunk.items()}
            total += float(self._runner(chunk)(**chunk)) * len(part)
        return total / len(self.rows)

    def _runner(self, example: dict):
        """One runner per chunk size; only full chunks (the training step's shape) are worth a CUDA graph."""
        size = len(example["rows"])
        if size not in self.runners:
            self.runners[size] = loss_runner(
                self.sample_loss, [], example, backward=False, graph=self.graph and size == self.batch_size
            )
        return self.runners[size]


class EarlyStopping:
    """The stopping rule over the validation losses seen so far; `stopped` once they have stopped falling
    (never before `min_steps`)."""

    def __init__(self, cfg):
        self.enabled, self.every, self.min_steps = cfg.early_stop, cfg.val_every, cfg.min_steps
        self.window, self.z = cfg.val_window, cfg.val_z
        self.history: list[float] = []
        self.stopped = False

    def due(self, step: int) -> bool:
        """Whether to validate after `step`."""
        return self.enabled and step % self.every == 0

    def update(self, step: int, val_loss: float) -> bool:
        """Record the validation loss after `step`; True when learning should stop."""
        self.history.append(val_loss)
        self.stopped = step >= self.min_steps and loss_stopped_falling(self.history, self.window, self.z)
        return self.stopped

    def reset(self) -> None:
        self.history, self.stopped = [], False

    def state_dict(self) -> dict:
        """What a checkpoint keeps (under the names run.json and older checkpoints use)."""
        return {"val_history": list(self.history), "stopped_early": self.stopped}

    def load_state_dict(self, state: dict) -> None:
        self.history = list(state.get("val_history", []))
        self.stopped = bool(state.get("stopped_early", False))


def loss_stopped_falling(history: list[float], window: int, z: float) -> bool:
    """True when the least-squares slope of the last `window` values is not `z` standard errors below zero."""
    if len(history) < max(window, 3):
        return False
    y = torch.tensor(history[-window:], dtype=torch.float64)
    x = torch.arange(len(y), dtype=torch.float64)
    x = x - x.mean()
    slope = float((x * (y - y.mean())).sum() / (x * x).sum())
    residual = y - y.mean() - slope * x
    se = float((residual.pow(2).sum() / (len(y) - 2) / (x * x).sum()).sqrt())
    return slope >= -z * se
