"""``lrkit sweep`` on the command line, and every kind of bad input."""
import json
import os
import time

import pytest

from lrkit.cli import main

SMALL = ["--lrs", "1e-3:1", "--points-per-decade", "4", "--budget", "60", "--no-progress"]


def test_cli_sweep_writes_table_plot_csv_json(journal, tmp_path, capsys):
    code = main(["sweep", "wine-logreg", *SMALL, "--storage", journal,
                 "--plot", str(tmp_path / "s.png"), "--csv", str(tmp_path / "s.csv"),
                 "--json", str(tmp_path / "s.json")])
    out = capsys.readouterr().out
    assert code == 0
    assert "rank" in out and "best: lr=" in out and "optuna-dashboard" in out
    assert (tmp_path / "s.png").exists() and (tmp_path / "s.csv").read_text().startswith("number,")
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["best"]["lr"] > 0
    # the same command resumes (here: finds everything done); --json alone prints JSON
    assert main(["sweep", "wine-logreg", *SMALL, "--storage", journal, "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["best"] == data["best"] and len(again["trials"]) == len(data["trials"])
    assert main(["sweep", "wine-logreg", "--storage", journal, "--report"]) == 0
    assert "best: lr=" in capsys.readouterr().out


@pytest.mark.parametrize("args, words", [
    (["--lrs", "1:1e-3"], "inverted"),
    (["--lrs", "1e-2:1e-2"], "empty"),
    (["--lrs", ""], "empty"),
    (["--lrs", "0:1"], "positive"),
    (["--optimizers", "sgd,lion"], "unknown optimizer 'lion'"),
    (["--optimizers", "adam(foo=1)"], "rejects its options"),
    (["--seeds", "0"], "seeds must be an integer >= 1"),
    (["--workers", "0"], "workers must be an integer >= 1"),
    (["--budget", "0"], "budget must be an integer >= 2"),
    (["--points-per-decade", "0"], "--points-per-decade"),
])
def test_bad_input_is_refused_before_training(args, words, journal, capsys):
    base = ["sweep", "wine-logreg", "--storage", journal, "--no-progress"]
    assert main(base + args) == 2
    err = capsys.readouterr().err
    assert "lrkit sweep: error:" in err and words in err
    assert not os.path.exists(journal) or "COMPLETE" not in open(journal).read()


def test_unknown_example_and_missing_recipe(journal, capsys):
    assert main(["sweep", "no-such-example", "--storage", journal, "--no-progress"]) == 2
    assert "unknown example 'no-such-example'" in capsys.readouterr().err
    assert main(["sweep", "nowhere.py:recipe", "--storage", journal, "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_unreachable_storage_fails_fast_and_clearly(capsys, tmp_path):
    start = time.monotonic()
    url = "postgresql://lrkit:secret@127.0.0.1:1/nowhere"
    assert main(["sweep", "wine-logreg", *SMALL, "--storage", url]) == 2
    err = capsys.readouterr().err
    assert "cannot reach storage postgresql://lrkit:***@127.0.0.1:1/nowhere" in err
    assert "secret" not in err
    assert time.monotonic() - start < 30
    missing_dir = f"sqlite:///{tmp_path}/no/such/dir/db.sqlite"
    assert main(["sweep", "wine-logreg", *SMALL, "--storage", missing_dir]) == 2
    assert "cannot reach storage" in capsys.readouterr().err
    assert main(["sweep", "wine-logreg", *SMALL, "--storage", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_changed_settings_are_refused_unless_continued(journal, capsys):
    assert main(["sweep", "wine-logreg", *SMALL, "--storage", journal]) == 0
    capsys.readouterr()
    changed = ["sweep", "wine-logreg", *SMALL, "--storage", journal, "--optimizers", "sgd,adam"]
    assert main(changed) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "optimizers" in err and "--continue" in err
    assert main(changed + ["--continue"]) == 0


def test_report_of_a_missing_study(journal, capsys):
    assert main(["sweep", "wine-logreg", "--storage", journal, "--report"]) == 2
    assert "no sweep is stored" in capsys.readouterr().err
    assert not os.path.exists(journal)  # a report creates nothing
    assert main(["sweep", "wine-logreg", *SMALL, "--storage", journal]) == 0
    capsys.readouterr()
    assert main(["sweep", "moons-mlp", "--storage", journal, "--report"]) == 2
    assert "no study 'lrkit-sweep-moons-mlp'" in capsys.readouterr().err


def _seeded_result(losses_by_lr):
    from lrkit.sweep.results import SweepResult, TrialRecord

    records, number = [], 0
    for lr, losses in losses_by_lr.items():
        for seed, loss in enumerate(losses):
            records.append(TrialRecord(number=number, optimizer="sgd", lr=lr, seed=seed,
                                       status="finished", loss=loss, steps=10))
            number += 1
    return SweepResult(records, settings={}, study_name="noise", diagnose=False)


def test_seed_noise_sentence_prints_its_threshold_and_the_band_follows_it():
    """Best 1.0 +/- 0.1, runner-up 1.17 +/- 0.1 over 2 seeds: the difference 0.17 is within
    2 x SE(difference) = 0.2 (but beyond 2 x SE(best mean) = 0.141 and 2%), so the runner-up is
    within seed noise, and the near-best band must hold it too."""
    import math

    result = _seeded_result({0.01: [0.9293, 1.0707], 0.0178: [1.0993, 1.2407],
                             0.1: [2.0, 2.1]})
    cmp = result.seed_comparison()
    se = math.sqrt(2 * 0.1 ** 2 / 2)
    assert cmp["standard_error"] == pytest.approx(se, rel=1e-3)
    assert cmp["threshold"] == pytest.approx(2 * se, rel=1e-3) and not cmp["significant"]
    text = result.summary()
    assert f"is within seed noise (threshold {2 * se:.4f} = 2 x standard error {se:.4f})" in text
    assert result.band() == (0.01, 0.0178)
    assert "0.01 .. 0.0178" in text


def _recipe_file(path, width):
    path.write_text(
        "import torch\n"
        "from lrkit import examples\n"
        "def make(seed=0):\n"
        "    problem = examples.build('wine-logreg', seed=seed)\n"
        f"    problem.model = torch.nn.Sequential(torch.nn.Linear(13, {width}), torch.nn.ReLU(),\n"
        f"                                        torch.nn.Linear({width}, 3))\n"
        "    problem.optimizer = torch.optim.SGD(problem.model.parameters(), lr=0.01)\n"
        "    return problem\n")
    return f"{path}:make"


def test_a_study_of_another_recipe_is_never_continued(journal, tmp_path, capsys):
    assert main(["sweep", "wine-logreg", *SMALL, "--storage", journal]) == 0
    capsys.readouterr()
    target = _recipe_file(tmp_path / "recipe.py", 4)
    other = ["sweep", target, *SMALL, "--storage", journal, "--study-name",
             "lrkit-sweep-wine-logreg"]
    for extra in ([], ["--continue"]):  # the old message offered --continue, which reused all
        assert main(other + extra) == 2
        err = capsys.readouterr().err
        assert "holds a sweep of another recipe" in err and "wine-logreg" in err
        assert "--study-name" in err


def test_an_edited_recipe_file_is_not_taken_for_its_stored_trials(journal, tmp_path, capsys):
    path = tmp_path / "recipe.py"
    command = ["sweep", _recipe_file(path, 4), *SMALL, "--storage", journal]
    assert main(command) == 0
    capsys.readouterr()
    _recipe_file(path, 16)  # a wider model: the stored trials trained the narrow one
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "problem_source" in err and "source changed" in err and "--continue" in err


@pytest.mark.parametrize("option", [["--lrs", "1e-5:1e-4"], ["--seeds", "3"],
                                    ["--optimizers", "adam"], ["--continue"]])
def test_report_refuses_options_that_only_say_how_to_run(option, journal, capsys):
    assert main(["sweep", "wine-logreg", *SMALL, "--storage", journal]) == 0
    capsys.readouterr()
    assert main(["sweep", "wine-logreg", "--storage", journal, "--report", *option]) == 2
    err = capsys.readouterr().err
    assert f"--report prints the stored study as it was run, and {option[0]}" in err


def test_report_of_another_recipes_study_is_refused(journal, tmp_path, capsys):
    assert main(["sweep", "wine-logreg", *SMALL, "--storage", journal]) == 0
    capsys.readouterr()
    target = _recipe_file(tmp_path / "recipe.py", 4)
    assert main(["sweep", target, "--storage", journal, "--report", "--study-name",
                 "lrkit-sweep-wine-logreg"]) == 2
    err = capsys.readouterr().err
    assert "holds a sweep of 'wine-logreg'" in err


def test_a_moved_recipe_file_continues_its_study(journal, tmp_path, capsys):
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    target = _recipe_file(tmp_path / "old" / "recipe.py", 4)
    assert main(["sweep", target, *SMALL, "--storage", journal, "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    os.replace(tmp_path / "old" / "recipe.py", tmp_path / "new" / "recipe.py")
    moved = ["sweep", f"{tmp_path / 'new' / 'recipe.py'}:make", *SMALL, "--storage", journal,
             "--study-name", first["study_name"], "--json"]
    assert main(moved) == 2  # another path: refused as other settings, --continue offered
    assert "--continue" in capsys.readouterr().err
    assert main(moved + ["--continue"]) == 0  # the same source: its trials are reused
    again = json.loads(capsys.readouterr().out)
    assert [t["loss"] for t in again["trials"]] == [t["loss"] for t in first["trials"]]
    assert main(moved[:2] + ["--storage", journal, "--study-name", first["study_name"],
                             "--report"]) == 0  # and reported under its new path


def test_a_study_stored_before_the_source_was_kept_resumes_and_records_it(journal, tmp_path,
                                                                          capsys):
    import optuna

    from lrkit.sweep.optuna_engine import SETTINGS_ATTR, StorageHandle

    target = _recipe_file(tmp_path / "recipe.py", 4)
    command = ["sweep", target, *SMALL, "--storage", journal, "--json"]
    assert main(command) == 0
    first = json.loads(capsys.readouterr().out)
    study = optuna.load_study(study_name=first["study_name"],
                              storage=StorageHandle(journal).open())
    old = {k: v for k, v in study.user_attrs[SETTINGS_ATTR].items() if k != "problem_source"}
    study.set_user_attr(SETTINGS_ATTR, old)  # as an earlier lrkit stored it
    assert main(command) == 0  # resumed as it was (it needed --continue after the upgrade)
    again = json.loads(capsys.readouterr().out)
    assert [t["loss"] for t in again["trials"]] == [t["loss"] for t in first["trials"]]
    study = optuna.load_study(study_name=first["study_name"],
                              storage=StorageHandle(journal).open())
    assert "problem_source" in study.user_attrs[SETTINGS_ATTR]  # recorded from now on


def test_a_script_function_is_the_same_study_from_the_cli_and_from_python(journal, tmp_path,
                                                                           capsys):
    # lrkit sweep script.py:make and lrkit.sweep(make) inside script.py name the same study:
    # they had different source digests (the file's, the function's) and refused each other
    import subprocess
    import sys

    from tests.sweep.helpers import subprocess_env

    script = tmp_path / "script.py"
    _recipe_file(script, 4)
    script.write_text(script.read_text() + (
        "\nif __name__ == '__main__':\n"
        "    import lrkit, sys\n"
        f"    r = lrkit.sweep(make, lrs='1e-3:1', points_per_decade=4, budget=60,\n"
        f"                    storage={journal!r}, progress=False)\n"
        "    print(r.study_name, len(r.records))\n"))
    assert main(["sweep", f"{script}:make", *SMALL, "--storage", journal, "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         env=subprocess_env(), timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [first["study_name"], str(len(first["trials"]))]


@pytest.mark.parametrize("args, words", [
    # argparse took -1:1 for an option: "argument --lrs: expected one argument"
    (["--lrs", "-1:1"], "--lrs '-1:1': the range's low end must be a positive finite learning "
                        "rate, got '-1'"),
    (["--lrs", "-1e-4:1", "--seeds", "2"], "--lrs '-1e-4:1': the range's low end must be a "
                                           "positive finite learning rate"),
    (["--lrs", "-0.1,0.2"], "--lrs '-0.1,0.2': rate 1 must be a positive finite learning rate"),
    (["--lrs=-1:1"], "--lrs '-1:1': the range's low end must be a positive"),
    # empty items were dropped without a word
    (["--lrs", "0.1,,0.2"], "--lrs '0.1,,0.2' has an empty item (item 2 of 3)"),
    (["--optimizers", "sgd,,adam"], "--optimizers 'sgd,,adam' has an empty item (item 2 of 3); "
                                    "give the optimizer names separated by single commas"),
])
def test_negative_rates_and_empty_items_reach_lrkits_own_checks(args, words, journal, capsys):
    base = ["sweep", "wine-logreg", "--storage", journal, "--no-progress"]
    assert main(base + args) == 2
    err = capsys.readouterr().err
    assert err.startswith("lrkit sweep: error: ") and words in err and err.count("\n") == 1
    assert "expected one argument" not in err


@pytest.mark.parametrize("args, words", [
    (["--study-name", "--lrs"], "argument --study-name: expected one argument"),
    (["-x"], "unrecognized arguments: -x"),
])
def test_options_that_do_not_start_with_a_digit_are_still_options(args, words, journal, capsys):
    with pytest.raises(SystemExit) as stop:  # argparse's own refusal
        main(["sweep", "wine-logreg", "--storage", journal, *args])
    assert stop.value.code == 2 and words in capsys.readouterr().err
