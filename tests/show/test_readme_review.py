"""From a new user's walk through the README: what the text and the program disagreed on."""
import os
import stat

import torch

import lrkit
from lrkit.show.report import write_atomically
from tests.find.helpers import tiny_problem


def test_pages_are_written_with_the_umask_not_private(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "index.html"
        write_atomically(path, "<html></html>")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # it was 0600: a web server could not read it


def test_a_linear_ramp_that_stops_early_names_end_lr_not_start_lr():
    model, loader, criterion = tiny_problem()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    result = lrkit.find_lr(model, optimizer, loader, criterion, ramp="linear", end_lr=1e4,
                           num_steps=50, noise_batches=0, progress=False)
    (warning,) = [w for w in result.warnings if "stopped after" in w]
    assert "lower end_lr" in warning and "lower it" not in warning  # lowering start_lr did nothing


def test_not_enough_data_does_not_say_a_few_hundred_are_better_than_a_thousand():
    d = lrkit.diagnose([1.0, 0.9, 0.8], min_points=1000)
    assert "at least 1000)" in d.explanation and "better a few hundred" not in d.explanation
    assert "better a few hundred" in lrkit.diagnose([1.0, 0.9, 0.8]).explanation


def test_a_page_is_written_where_the_file_system_refuses_modes(tmp_path, monkeypatch):
    def refuse(*args):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "fchmod", refuse)
    path = tmp_path / "index.html"
    write_atomically(path, "<html></html>")
    assert path.read_text() == "<html></html>"


def test_a_linear_ramp_from_a_high_start_names_start_lr():
    model, loader, criterion = tiny_problem()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    result = lrkit.find_lr(model, optimizer, loader, criterion, ramp="linear", start_lr=5e3,
                           end_lr=1e4, num_steps=50, noise_batches=0, progress=False)
    (warning,) = [w for w in result.warnings if "stopped after" in w]
    assert "start_lr" in warning and "lower end_lr" not in warning
