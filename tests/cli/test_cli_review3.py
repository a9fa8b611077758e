"""From a review of bad input across the CLI: an output pointed at an input or at another output
destroyed it, with exit status 0."""
import pytest

import lrkit
from lrkit.cli import main


def _fail_fast(monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("training started before the check")

    monkeypatch.setattr(lrkit, "find_lr", no_training)
    monkeypatch.setattr("lrkit.problem.load_problem", no_training)


@pytest.mark.parametrize("argv, fragment", [
    (["find", "{dir}/recipe.py:make", "--json", "{dir}/recipe.py"],
     "--json '{dir}/recipe.py' is also the recipe file, an input"),
    (["recommend", "{dir}/recipe.py:make", "--yaml", "{dir}/recipe.py"],
     "--yaml '{dir}/recipe.py' is also the recipe file"),
    (["find", "wine-logreg", "--json", "{dir}/same.png", "--plot", "{dir}/same.png"],
     "--json '{dir}/same.png' is also --plot, an output"),
    (["sweep", "wine-logreg", "--storage", "{dir}/s.journal", "--json", "{dir}/s.journal"],
     "--json '{dir}/s.journal' is also --storage, an input"),
    (["sweep", "wine-logreg", "--storage", "{dir}/s.journal", "--csv", "{dir}/./s.journal"],
     "is also --storage"),
    (["schedule", "show", "cosine(100)", "--json", "{dir}/a.png", "--plot", "{dir}/a.png"],
     "is also --json, an output"),
])
def test_an_output_that_is_an_input_or_another_output_is_refused(argv, fragment, tmp_path,
                                                                 capsys, monkeypatch):
    _fail_fast(monkeypatch)
    recipe = tmp_path / "recipe.py"
    recipe.write_text("def make():\n    raise AssertionError('not to be run')\n")
    journal = tmp_path / "s.journal"
    journal.write_text("")
    before = recipe.read_bytes(), journal.read_bytes()
    code = main([a.format(dir=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert fragment.format(dir=tmp_path) in err and "Traceback" not in err
    assert (recipe.read_bytes(), journal.read_bytes()) == before
    assert not (tmp_path / "same.png").exists() and not (tmp_path / "a.png").exists()
