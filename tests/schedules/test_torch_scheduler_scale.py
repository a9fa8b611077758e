"""ScheduleLR: the config-list form, a guard's scale, and steps that are undone (paused)."""
import pytest
import torch
from torch import nn

from lrkit.schedules import parse, to_config, to_torch
from lrkit.schedules.torch_scheduler import paused


def _optimizer(groups=1):
    model = nn.Linear(2, 2)
    if groups == 1:
        return torch.optim.SGD(model.parameters(), lr=0.1)
    return torch.optim.SGD([{"params": [model.weight]}, {"params": [model.bias], "lr": 0.01}],
                           lr=0.1)


def _rates(optimizer, scheduler, steps):
    out = []
    for _ in range(steps):
        out.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return out


@pytest.mark.parametrize("groups", [1, 2])
def test_a_config_list_is_one_chained_schedule_not_one_per_group(groups):
    # three pieces: not as many as the groups, so not ambiguous
    spec = parse("warmup(10) >> linear(20, end=1) >> cosine(100)")
    a, b = _optimizer(groups), _optimizer(groups)
    from_config = to_torch(a, to_config(spec))
    from_spec = to_torch(b, spec)
    assert _rates(a, from_config, 30) == _rates(b, from_spec, 30)


def test_a_list_of_configs_as_long_as_the_groups_is_ambiguous_and_refused():
    a, b = parse("linear(100)"), parse("cosine(100)")
    with pytest.raises(Exception, match="could be one chained schedule or one schedule per group"):
        to_torch(_optimizer(2), [to_config(a), to_config(b)])
    from lrkit.schedules import from_config

    one_each = to_torch(_optimizer(2), [from_config(to_config(a)), from_config(to_config(b))])
    assert len(one_each.schedules) == 2


def test_scale_rates_holds_on_later_steps_and_through_a_resume():
    optimizer = _optimizer()
    scheduler = to_torch(optimizer, "cosine(100)")
    _rates(optimizer, scheduler, 10)
    expected = 0.1 * parse("cosine(100)")(10)
    scheduler.scale_rates(0.3)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.3 * expected)
    rates = _rates(optimizer, scheduler, 5)
    assert rates[-1][0] == pytest.approx(0.3 * 0.1 * parse("cosine(100)")(14))
    state = scheduler.state_dict()
    fresh_opt = _optimizer()
    resumed = to_torch(fresh_opt, "cosine(100)")
    resumed.load_state_dict(state)
    assert fresh_opt.param_groups[0]["lr"] == pytest.approx(optimizer.param_groups[0]["lr"])
    with pytest.raises(Exception, match="factor must be a positive finite number"):
        scheduler.scale_rates(0)


def test_steps_inside_paused_are_not_counted():
    optimizer = _optimizer()
    scheduler = to_torch(optimizer, "warmup(10) >> cosine(100)")
    _rates(optimizer, scheduler, 4)
    extra = []
    optimizer.register_step_post_hook(lambda *a: extra.append(1))  # a user's own hook
    with paused(optimizer):
        for _ in range(20):
            optimizer.step()
    assert scheduler.current_step == 4 and len(extra) == 20  # only lrkit's schedulers pause
    optimizer.step()
    assert scheduler.current_step == 5 and len(extra) == 21


def test_resuming_with_another_schedule_warns():
    optimizer = _optimizer()
    state = to_torch(optimizer, "cosine(100)").state_dict()
    other = to_torch(_optimizer(), "cosine(200)")
    with pytest.warns(UserWarning, match="differs from the one saved"):
        other.load_state_dict(state)
    same = to_torch(_optimizer(), "cosine(100)")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same.load_state_dict(state)


def test_schedulers_detached_or_created_during_a_pause_behave():
    optimizer = _optimizer()
    old = to_torch(optimizer, "cosine(100)")
    with paused(optimizer):
        optimizer.step()
        old.detach()  # the user drops a scheduler during the pause...
        new = to_torch(optimizer, "cosine(100)")  # ...and makes another
        for _ in range(5):
            optimizer.step()
        with paused(optimizer):  # nested
            optimizer.step()
        optimizer.step()
    assert old.current_step == 0 and new.current_step == 0
    for _ in range(3):
        optimizer.step()
    assert old.current_step == 0  # detached stays detached
    assert new.current_step == 3


def test_numpy_numbers_make_schedules_and_a_non_scalar_metric_is_named():
    import numpy as np

    from lrkit.schedules import cosine

    assert cosine(np.int64(10)) == cosine(10)
    assert cosine(100, floor=np.float64(0.25)) == cosine(100, floor=0.25)
    scheduler = to_torch(_optimizer(), "plateau(constant())")
    with pytest.raises(Exception, match="report\\(\\) needs one number"):
        scheduler.report(torch.tensor([1.0, 2.0]))
