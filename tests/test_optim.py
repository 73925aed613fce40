import pytest
import torch

from maskcls.errors import UserError
from maskcls.training.optim import OPTIMIZERS, create_optimizer, create_scheduler, weight_decay_groups


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


def test_no_weight_decay_on_biases_and_norm_weights():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.Linear(4, 2)
    )
    groups = weight_decay_groups(model, 0.05)
    decayed = [id(p) for p in groups[0]["params"]]
    assert decayed == [id(model[0].weight), id(model[3].weight)] and groups[0]["weight_decay"] == 0.05
    plain = [id(p) for p in groups[1]["params"]]
    assert plain == [id(model[0].bias), id(model[1].weight), id(model[1].bias), id(model[3].bias)]
    assert groups[1]["weight_decay"] == 0.0
    everything = weight_decay_groups(model, 0.05, decay_bias_and_norm=True)
    assert len(everything) == 1 and len(everything[0]["params"]) == 6 and everything[0]["weight_decay"] == 0.05
    optimizer = create_optimizer("adamw", groups, lr=0.1, weight_decay=0.05)
    assert [group["weight_decay"] for group in optimizer.param_groups] == [0.05, 0.0]


def test_a_misspelt_option_names_the_accepted_ones():
    with pytest.raises(UserError) as error:
        create_optimizer("adamw", params(), lr=0.1, weight_decy=0.1)
    assert str(error.value) == (
        "optimizer 'adamw' has no option 'weight_decy' (did you mean 'weight_decay'?); "
        "accepted: params, lr, weight_decay, betas"
    )
    optimizer = create_optimizer("sgd", params(), lr=0.1)
    with pytest.raises(UserError, match=r"scheduler 'cosine' has no option 'min_rate' \(did you mean 'min_lr'\?\)"):
        create_scheduler("cosine", optimizer, epochs=2, steps_per_epoch=3, min_rate=0.1)
