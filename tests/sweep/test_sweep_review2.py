"""Defects found in a second review of ``lrkit sweep`` (a user walkthrough): each test failed
before its fix."""
import json
import os
import sys
import types

import pytest

import lrkit
from lrkit.cli import main
from lrkit.errors import LrkitError
from lrkit.sweep.api import problem_label, default_study_name
from lrkit.sweep.results import SweepResult, TrialRecord
from lrkit.sweep.space import parse_rates

TINY = ["--lrs", "0.1,1", "--budget", "20", "--no-progress"]

RECIPE = """from lrkit import examples


def make(seed=0):
    return examples.build({example!r}, seed=seed)
"""


@pytest.fixture
def two_recipes(tmp_path, monkeypatch):
    """``a/recipe.py:make`` (wine-logreg) and ``b/recipe.py:make`` (logreg): two files with the
    same base name and function, in the current directory ``tmp_path``."""
    for folder, example in (("a", "wine-logreg"), ("b", "logreg")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "recipe.py").write_text(RECIPE.format(example=example))
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- 1. a recipe file is identified by its resolved absolute path ---------------------------------
def test_two_recipe_files_with_the_same_name_are_two_studies(two_recipes, journal, capsys):
    assert main(["sweep", "a/recipe.py:make", *TINY, "--storage", journal, "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(["sweep", "b/recipe.py:make", *TINY, "--storage", journal, "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    # the second file trained its own trials (before: it printed the first file's results)
    assert first["study_name"] != second["study_name"]
    assert second["settings"]["problem"] == os.path.realpath("b/recipe.py") + ":make"
    assert first["settings"]["problem"] == os.path.realpath("a/recipe.py") + ":make"
    assert [t["loss"] for t in first["trials"]] != [t["loss"] for t in second["trials"]]
    # each is resumed (and reported) by its own command
    assert main(["sweep", "a/recipe.py:make", "--storage", journal, "--report", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["study_name"] == first["study_name"]


def test_one_study_name_for_two_recipe_files_is_refused(two_recipes, journal, capsys):
    named = ["--storage", journal, "--study-name", "shared"]
    assert main(["sweep", "a/recipe.py:make", *TINY, *named]) == 0
    capsys.readouterr()
    assert main(["sweep", "b/recipe.py:make", *TINY, *named]) == 2
    err = capsys.readouterr().err
    assert "another recipe" in err and "b/recipe.py:make" in err and "a/recipe.py:make" in err
    assert main(["sweep", "b/recipe.py:make", *TINY, *named, "--continue"]) == 2  # never theirs


def test_a_recipe_file_is_the_same_study_from_any_path_to_it(two_recipes, monkeypatch):
    name = default_study_name("a/recipe.py:make")
    assert name.startswith("lrkit-sweep-recipe-make-")
    assert default_study_name("b/recipe.py:make") != name
    assert default_study_name("./a/../a/recipe.py:make") == name
    assert default_study_name(str(two_recipes / "a" / "recipe.py") + ":make") == name
    os.symlink(two_recipes / "a", two_recipes / "link")
    assert default_study_name("link/recipe.py:make") == name
    monkeypatch.chdir(two_recipes / "a")
    assert default_study_name("recipe.py:make") == name
    assert problem_label("recipe.py:make") == os.path.realpath("recipe.py") + ":make"
    # another function of the same file: another study, the same file digits
    assert default_study_name("recipe.py:other") == name.replace("-make-", "-other-")


def test_built_in_examples_and_importable_callables_keep_their_names():
    assert default_study_name("digits-mlp") == "lrkit-sweep-digits-mlp"
    assert problem_label("digits-mlp") == "digits-mlp"
    assert problem_label(lrkit.examples.build) == "lrkit.examples.build"


def test_a_function_of_the_running_script_is_named_by_the_script_file(tmp_path, monkeypatch):
    script = tmp_path / "train.py"
    script.write_text("")
    fake_main = types.ModuleType("__main__")
    fake_main.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", fake_main)

    def make(seed=0):
        pass

    make.__module__, make.__qualname__ = "__main__", "make"
    assert problem_label(make) == f"{os.path.realpath(script)}:make"
    here = default_study_name(make)
    assert here.startswith("lrkit-sweep-train-make-") and here == default_study_name(
        f"{script}:make")
    # another script with the same name and function (before: both '__main__.make')
    fake_main.__file__ = str(tmp_path / "elsewhere" / "train.py")
    assert default_study_name(make) != here


# -- 2. a storage file in a missing directory ------------------------------------------------------
def test_a_journal_in_a_missing_directory_is_refused(tmp_path, capsys):
    path = tmp_path / "no" / "such" / "x.journal"
    assert main(["sweep", "wine-logreg", *TINY, "--storage", str(path)]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and str(tmp_path / "no" / "such") in err
    assert not (tmp_path / "no").exists()  # nothing created (before: the directories were)


def test_a_sqlite_file_in_a_missing_directory_is_refused_and_report_creates_nothing(tmp_path,
                                                                                   capsys):
    url = f"sqlite:///{tmp_path}/no/such/x.db"
    assert main(["sweep", "wine-logreg", *TINY, "--storage", url]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()
    missing = f"sqlite:///{tmp_path}/x.db"
    assert main(["sweep", "wine-logreg", "--storage", missing, "--report"]) == 2
    assert "no sweep is stored" in capsys.readouterr().err
    assert not (tmp_path / "x.db").exists()  # reading does not create an empty database


def test_the_default_journal_directory_is_created(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "wine-logreg", *TINY]) == 0
    assert (tmp_path / ".lrkit" / "sweeps.journal").is_file()


def test_in_memory_sqlite_urls_are_not_taken_for_files():
    from lrkit.sweep.optuna_engine import StorageHandle

    assert StorageHandle("sqlite://").sqlite_file is None
    assert StorageHandle("sqlite:///:memory:").sqlite_file is None
    assert StorageHandle("sqlite:///rel/x.db").sqlite_file == "rel/x.db"
    assert StorageHandle("sqlite:////abs/x.db?timeout=5").sqlite_file == "/abs/x.db"
    assert StorageHandle("postgresql://u@h/db").sqlite_file is None


# -- 3. the report's JSON carries the strategy -----------------------------------------------------
@pytest.mark.parametrize("strategy", ["refine", "grid"])
def test_report_json_has_the_live_runs_strategy(strategy, journal, capsys):
    args = ["sweep", "wine-logreg", *TINY, "--storage", journal, "--strategy", strategy]
    assert main(args + ["--json"]) == 0
    live = json.loads(capsys.readouterr().out)
    assert main(["sweep", "wine-logreg", "--storage", journal, "--report", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert live["strategy"] and report["strategy"] == live["strategy"]  # before: ""
    assert lrkit.sweep.load(journal).strategy == live["strategy"]


# -- 4. points per decade written in --lrs ---------------------------------------------------------
@pytest.mark.parametrize("lrs, words", [
    ("1e-4:1:0", "between 1 and 100"),
    ("1e-4:1:200", "between 1 and 100"),
    ("1e-4:1:x", "not an integer"),
    ("0.5:2:1", "third part"),
])
def test_points_per_decade_in_lrs_errors_name_lrs(lrs, words, journal, capsys):
    assert main(["sweep", "wine-logreg", "--lrs", lrs, "--storage", journal,
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"--lrs '{lrs}'" in err and words in err
    assert "--points-per-decade" not in err  # an option the user did not pass
    with pytest.raises(LrkitError, match=f"lrs '{lrs}'"):
        parse_rates(lrs)


def test_the_points_per_decade_parameter_is_still_named_when_it_is_the_cause(capsys, journal):
    assert main(["sweep", "wine-logreg", "--lrs", "0.5:2", "--points-per-decade", "1",
                 "--storage", journal, "--no-progress"]) == 2
    assert "raise --points-per-decade" in capsys.readouterr().err


# -- 5. the legend of the sweep plot covers no data ------------------------------------------------
def test_the_plot_legend_is_outside_the_axes():
    R = TrialRecord
    records = [R(0, "sgd", 0.01, 0, "finished", loss=0.5, eval_curve=[[10, 0.5]]),
               R(1, "sgd", 0.1, 0, "finished", loss=0.3, eval_curve=[[10, 0.3]]),
               # a pruned trial's marker at the top left, where a legend used to go
               R(2, "sgd", 0.001, 0, "pruned", steps=3, eval_curve=[[3, 2.0]]),
               R(3, "sgd", 1.0, 0, "diverged", steps=2)]
    settings = {"optimizers": ["sgd"], "optimizer_labels": ["sgd"], "budget": 10, "seeds": 1,
                "rates": {"values": ["0.001", "0.01", "0.1", "1"]}}
    fig = SweepResult(records, settings=settings, study_name="legend", diagnose=False).plot()
    try:
        fig.canvas.draw()
        ax = fig.axes[0]
        legend = ax.get_legend()
        assert legend is not None and len(legend.get_texts()) >= 3
        box = legend.get_window_extent()
        assert box.y1 <= ax.get_window_extent().y0  # below the axes: over no point
        assert box.y0 >= fig.bbox.y0 - 1  # and inside the figure
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
