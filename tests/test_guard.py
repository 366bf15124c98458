"""The non-finite-step guard decides on the device: a bad step is undone there, a good one is AdamW's own."""

import torch

from oneword.guard import Guard


def adamw_after(grads, on_device: bool):
    """A parameter and its AdamW state after a series of gradients: non-finite ones undone on the device by the
    guard, or (the reference) skipped by the host."""
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(2, 5))
    opt = torch.optim.AdamW([p], lr=0.1, weight_decay=0.01)
    guard = Guard("cpu")
    for grad in grads:
        p.grad = grad.clone()
        if on_device:
            with guard.kept_if_finite(torch.tensor(1.0), opt, p):
                opt.step()
        elif torch.isfinite(grad).all():
            opt.step()
    return p.detach().clone(), {k: v.clone() for k, v in opt.state[p].items()}, guard


def test_a_nonfinite_step_is_undone_as_if_skipped_and_a_finite_one_is_adamws_bit_for_bit():
    g = [torch.randn(2, 5) for _ in range(4)]
    nan, inf = torch.full((2, 5), float("nan")), torch.full((2, 5), float("inf"))
    grads = [nan, g[0], g[1], inf, nan, g[2], g[3]]  # the first step bad: AdamW's state starts fresh after it
    p_dev, state_dev, guard = adamw_after(grads, on_device=True)
    p_host, state_host, _ = adamw_after(grads, on_device=False)
    assert torch.equal(p_dev, p_host)
    assert state_dev.keys() == state_host.keys() and all(torch.equal(state_dev[k], state_host[k]) for k in state_dev)
    assert int(state_dev["step"]) == 4
    skipped, worst, _ = guard.read()
    assert (skipped, worst) == (3, 2)
    assert guard.read()[:2] == (0, 0)  # counts restart after a read


def test_the_guard_keeps_the_last_finite_loss_and_carries_an_unfinished_run_of_bad_steps():
    guard, grad = Guard("cpu"), torch.zeros(3)
    for loss in (0.5, 0.25, float("nan")):
        ok = guard.check(torch.tensor(loss), grad)
    assert not bool(ok)
    assert guard.read() == (1, 1, 0.25)
    guard.check(torch.tensor(float("inf")), grad)
    assert guard.read()[:2] == (1, 2)  # the run of bad steps started before the read goes on
    assert not bool(guard.check(torch.tensor(1.0), None))  # no gradient reached the vector: not a usable step
    guard.forget_runs()
    assert guard.read()[:2] == (1, 0)
