"""Schedules at the edges, found in a review: an exponential decay per epoch and one that
collapses, an Accelerate-wrapped optimizer, options a spec in steps ignored, a wsd rescale."""
import pytest
import torch

from lrkit.errors import LrkitError
from lrkit.schedules import lint, parse, preview, rescale, to_torch


def test_an_exponential_decays_by_gamma_every_given_length():
    """ "Decay 10% per epoch" could not be written: gamma was per step, `every=` refused."""
    s = parse("exponential(0.9, every=1*epoch)").resolve(steps_per_epoch=390)
    assert s(390) == pytest.approx(0.9) and s(390 * 20) == pytest.approx(0.9 ** 20)
    assert s(195) == pytest.approx(0.9 ** 0.5)  # smooth, not a staircase
    assert parse("exponential(0.9)")(3) == pytest.approx(0.729)
    assert str(parse("exponential(0.9)")) == "exponential(0.9)"


def test_a_rate_that_collapses_early_is_linted():
    """exponential(0.9) at 390 steps an epoch is 1e-18 after one epoch and 0 from step 7073,
    and preview said nothing."""
    found = lint("exponential(0.9)", 11700)
    assert [w.code for w in found] == ["collapse"]
    assert "every=1*epoch" in found[0].message and found[0].step < 200
    assert [w.code for w in preview("exponential(0.9)", 11700).warnings] == ["collapse"]
    for fine in ("exponential(0.9, every=390)", "cosine(11700)", "linear(11700)",
                 "warmup(100) >> cosine(11600)", "step(3900, gamma=0.1)"):
        assert "collapse" not in [w.code for w in lint(fine, 11700)], fine
    # a schedule that ends early at 0 is the short-horizon warning's
    assert [w.code for w in lint("cosine(100)", 11700)] == ["short-horizon"]


def test_a_scheduler_follows_an_optimizer_accelerate_has_wrapped():
    """AttributeError: 'AcceleratedOptimizer' object has no attribute
    '_optimizer_step_post_hooks'."""
    import accelerate
    accelerator = accelerate.Accelerator(cpu=True)
    model = torch.nn.Linear(2, 1)
    model, optimizer = accelerator.prepare(model, torch.optim.SGD(model.parameters(), lr=0.1))
    scheduler = to_torch(optimizer, "cosine(10)")
    for _ in range(5):
        accelerator.backward(model(torch.ones(4, 2)).sum())
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)


@pytest.mark.parametrize("options", [
    {"steps_per_epoch": 10, "batches_per_epoch": 10},
    {"grad_accum": 4},
    {"total_steps": 50, "epochs": 3, "steps_per_epoch": 10},
])
def test_contradicting_options_are_refused_for_a_spec_in_steps_too(options):
    """Accepted silently when the spec needed no resolving, refused when it did."""
    optimizer = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
    with pytest.raises(LrkitError):
        to_torch(optimizer, "cosine(100)", **options)
    with pytest.raises(LrkitError):
        preview("cosine(100)", 100, **{k: v for k, v in options.items() if k != "total_steps"},
                **({"total_steps": options["total_steps"]} if "total_steps" in options else {}))


def test_a_wsd_warmup_that_no_longer_fits_after_a_rescale_names_the_rescale():
    """It read "wsd(): warmup + decay = 2200 must be <= steps = 1000", a spec never written."""
    with pytest.raises(LrkitError, match="rescale from batch 1024 to 256 keeps the warmup's "
                                         "samples.*warmup='steps'"):
        rescale("wsd(1000, decay=200, warmup=500)", 1024, 256)
    assert "warmup=400" in str(rescale("wsd(1000, decay=200, warmup=100)", 1024, 256))


def test_schedule_list_shows_each_familys_whole_first_paragraph(capsys):
    from lrkit.cli import main

    assert main(["schedule", "list"]) == 0
    assert 'exponential(0.9, every=1*epoch)' in capsys.readouterr().out


def test_a_comparison_for_then_says_to_write_then():
    """ "Compare is not allowed": Python's class name for the '>' the user typed."""
    with pytest.raises(LrkitError, match="write '>>'"):
        parse("warmup(100) > cosine(900)")


@pytest.mark.parametrize("spec, steps", [("restarts(1800)", 4000), ("cyclic(1000, low=0.0)", 6000),
                                         ("warmup(100) >> restarts(2000)", 7000),
                                         ("cosine(5000)", 10000),
                                         ("polynomial(4000, power=2)", 10000)])
def test_a_rate_that_comes_back_or_ends_the_schedule_is_no_collapse(spec, steps):
    """A cosine restart's last step before the restart, or cyclic's low of 0, read "the rest of
    the run trains at almost nothing"; a decay to an early end was also short-horizon's."""
    assert "collapse" not in [w.code for w in lint(spec, steps)]


def test_a_collapse_behind_a_warmup_is_found_on_long_runs():
    """Sampled every 25,000 steps, the peak after a warmup from 0 was never seen."""
    assert "collapse" in [w.code for w in lint("warmup(1000) >> exponential(0.9)", 10 ** 8)]


def test_a_wsd_with_lengths_in_epochs_rescales_as_before():
    """TypeError: '<=' not supported between 'Duration' and 'int'."""
    assert "warmup=50" in str(rescale("wsd(1000, decay=0.1*total, warmup=100)", 32, 64))
    assert "warmup=200" in str(rescale("wsd(1000, decay=2*epoch, warmup=100)", 64, 32))


def test_pausing_an_accelerate_wrapped_optimizer_pauses_its_scheduler():
    """The scheduler follows the optimizer inside; the pause marked the wrapper: a range test
    moved the user's schedule on by its steps."""
    import accelerate

    from lrkit.schedules.torch_scheduler import paused

    accelerator = accelerate.Accelerator(cpu=True)
    model = torch.nn.Linear(2, 1)
    model, optimizer = accelerator.prepare(model, torch.optim.SGD(model.parameters(), lr=0.1))
    scheduler = to_torch(optimizer, "cosine(1000)")
    with paused(optimizer):
        for _ in range(5):
            accelerator.backward(model(torch.ones(4, 2)).sum())
            optimizer.step()
            optimizer.zero_grad()
    assert scheduler.state_dict()["step"] == 0
