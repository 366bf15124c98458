"""The non-finite-step guard, on the device: no training step waits for the host.

Reading a GPU value on the host (`bool(torch.isfinite(loss))`, `loss.item()`, GradScaler's own found-inf
check) makes the host wait until the GPU has finished all queued work, and the GPU then idles while the host
draws and launches the next step. So each step decides on the device: the optimiser step is applied, then undone
with `torch.where` where the loss or gradient was not finite (`Guard.kept_if_finite`), and `Guard` counts those
steps in device tensors that the loop reads at its check points only (validations, checkpoints, the end).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


class Guard:
    """Non-finite steps counted on the device; `read` (one host sync) reports and restarts the counts."""

    def __init__(self, device):
        self.skipped = torch.zeros((), dtype=torch.int64, device=device)  # since the last read
        self.in_row = torch.zeros((), dtype=torch.int64, device=device)  # the current run of bad steps
        self.worst = torch.zeros((), dtype=torch.int64, device=device)  # longest run since the last read
        self.loss = torch.zeros((), dtype=torch.float32, device=device)  # the last finite loss

    def check(self, loss: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """A 0-dim bool tensor on the device: this step's loss and gradient are finite (no gradient: not)."""
        ok = torch.isfinite(loss) & (torch.isfinite(grad).all() if grad is not None else False)
        bad = (~ok).long()
        self.skipped += bad
        self.in_row.add_(1).mul_(bad)  # +1 on a bad step, back to 0 on a good one
        torch.maximum(self.worst, self.in_row, out=self.worst)
        self.loss = torch.where(ok, loss.detach().float(), self.loss)
        return ok

    @contextmanager
    def kept_if_finite(self, loss: torch.Tensor, opt: torch.optim.Optimizer, param: torch.Tensor):
        """Around `opt.step()` for `param`: its effect is undone on the device where this step's loss or gradient
        is not finite (`check`): the parameter and the optimiser's state (moments, step count) keep their values,
        as if the step had been skipped. Where they are finite the result is opt.step()'s bit for bit. The state's
        step count must live on the loss's device for this to need no sync (AdamW(capturable=True) on CUDA; on
        the CPU there is no device to wait for)."""
        ok = self.check(loss, param.grad)
        had = {k: v.clone() for k, v in opt.state[param].items()} if param in opt.state else {}
        old = param.detach().clone()
        yield ok
        pairs = [(param.data, old)] + [(v, had.get(k, torch.zeros_like(v))) for k, v in opt.state[param].items()]
        with torch.no_grad():  # (a state created by this step goes back to zeros: AdamW's fresh state)
            for now, before in pairs:
                now.copy_(torch.where(ok, now, before))

    def read(self) -> tuple[int, int, float]:
        """(non-finite steps, longest run of them in a row, last finite loss) since the last read."""
        skipped, worst, loss = torch.stack([self.skipped.double(), self.worst.double(), self.loss.double()]).tolist()
        self.skipped.zero_()
        self.worst.copy_(self.in_row)  # a run still going on counts on at the next read
        return int(skipped), int(worst), loss

    def take_skipped(self) -> int:
        """The non-finite steps since the last read, handed over (one host sync); the runs of bad steps go on."""
        skipped = int(self.skipped)
        self.skipped.zero_()
        return skipped

    def state_dict(self) -> dict:
        """What a checkpoint keeps: the run of bad steps going on and the longest since the last read, so that a
        resumed run rolls back where the uninterrupted one would."""
        in_row, worst = torch.stack([self.in_row, self.worst]).tolist()
        return {"bad_in_row": int(in_row), "bad_worst": int(worst)}

    def load_state_dict(self, state: dict) -> None:
        self.in_row.fill_(int(state.get("bad_in_row", 0)))
        self.worst.fill_(int(state.get("bad_worst", 0)))

    def forget_runs(self) -> None:
        """After a roll-back: the run of bad steps that caused it is dealt with."""
        self.in_row.zero_()
        self.worst.zero_()
