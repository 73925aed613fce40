import pytest
import torch

from maskcls.errors import UserError
from maskcls.optim import OPTIMIZERS, create_optimizer, create_scheduler


def params():
    return [torch.nn.Parameter(torch.ones(3))]


def rates(name, epochs=4, steps=10, lr=0.1, **kwargs):
    optimizer = create_optimizer("sgd", params(), lr=lr)
    scheduler = create_scheduler(name, optimizer, epochs=epochs, steps_per_epoch=steps, **kwargs)
    seen = []
    for _ in range(epochs * steps):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


@pytest.mark.parametrize("name", sorted(OPTIMIZERS.names()))
def test_every_optimizer_takes_a_step(name):
    weight = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    optimizer = create_optimizer(name, [weight], lr=0.1)
    (weight**2).sum().backward()
    optimizer.step()
    assert (weight.detach().abs() < torch.tensor([1.0, 2.0])).all()


def test_step_halves_at_epoch_boundaries():
    seen = rates("step", step_epochs=1, gamma=0.5)
    assert seen[0] == seen[9] == pytest.approx(0.1)
    assert seen[10] == pytest.approx(0.05) and seen[39] == pytest.approx(0.0125)


def test_cosine_goes_down_to_min_lr():
    seen = rates("cosine", min_lr=0.001)
    assert seen[0] == pytest.approx(0.1) and seen[-1] == pytest.approx(0.001, abs=2e-3)
    assert all(a >= b for a, b in zip(seen, seen[1:], strict=False))


def test_cyclic_peaks_at_max_lr_then_halves():
    seen = rates("cyclic", epochs=4, cycle_epochs=2, base_lr=0.01, max_lr=0.1)
    assert seen[0] == pytest.approx(0.01)
    assert seen[10] == pytest.approx(0.1)  # half a cycle (1 epoch) up
    assert seen[30] == pytest.approx(0.055)  # second cycle peaks at half the amplitude


def test_linear_warmup_then_schedule():
    seen = rates("cosine", epochs=5, warmup_epochs=1)
    assert seen[0] == pytest.approx(0.001) and seen[5] < seen[9] < 0.1
    assert seen[10] == pytest.approx(0.1) and seen[-1] < 0.01


def test_unknown_names_fail_clearly():
    with pytest.raises(UserError, match="did you mean 'adamw'"):
        create_optimizer("adamww", params())
    with pytest.raises(UserError, match="known: cosine, cyclic, none, step"):
        create_scheduler("onecycle", create_optimizer("sgd", params()), epochs=1, steps_per_epoch=1)
