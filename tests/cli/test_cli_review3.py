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


def test_list_examples_with_json_prints_json_and_refuses_a_target(capsys):
    import json

    assert main(["find", "--list-examples", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert {"name", "description"} <= set(listing[0]) and len(listing) == len(
        lrkit.examples.names())
    assert main(["find", "wine-logreg", "--list-examples"]) == 2
    assert "drop the target 'wine-logreg'" in capsys.readouterr().err


def test_a_schedule_preview_of_overflowing_epochs_is_refused(capsys):
    code = main(["schedule", "show", "cosine(total)", "--epochs", "1e300",
                 "--steps-per-epoch", "1e10"])
    err = capsys.readouterr().err
    assert code == 2 and "more steps than can be previewed" in err and "Traceback" not in err


@pytest.mark.parametrize("content, fragment", [
    ("step,loss,loss\n" + "".join(f"{i},{2.5 - i / 100},{250 - i}\n" for i in range(40)),
     "line 1: the column 'loss' appears 2 times (columns 2, 3)"),
    ("step,loss\n" + "".join(f"{i if i != 10 else 'inf'},{2.5 - i / 100}\n" for i in range(40)),
     "line 12: the step 'inf' is not a finite number"),
    ("step,loss,lr\n" + "".join(f"{i},{2.5 - i / 100},-0.1\n" for i in range(40)),
     "line 2: the rate '-0.1' is not a valid learning rate"),
])
def test_a_log_with_a_bad_column_or_cell_names_its_line(content, fragment, tmp_path, capsys):
    path = tmp_path / "log.csv"
    path.write_text(content)
    assert main(["diagnose", str(path)]) == 2
    err = capsys.readouterr().err
    assert fragment in err and str(path) in err and "Traceback" not in err


def test_a_json_log_with_a_huge_integer_or_a_column_of_lists_is_a_clear_error(tmp_path, capsys):
    huge = tmp_path / "huge.jsonl"
    huge.write_text("".join(f'{{"step": {i}, "loss": {2.0 - i / 100}}}\n' for i in range(20))
                    + '{"step": 1' + "0" * 400 + ', "loss": 1.0}\n')
    assert main(["diagnose", str(huge)]) == 2
    assert "beyond the range of a float" in capsys.readouterr().err
    nested = tmp_path / "nested.json"
    nested.write_text('{"step": [0, 1, 2], "loss": [[2.6], [2.5], [2.4]]}')
    assert main(["diagnose", str(nested)]) == 2
    assert "the column 'loss' holds lists, not numbers" in capsys.readouterr().err


def test_several_outputs_may_go_to_dev_null_and_a_sqlite_storage_is_an_input(tmp_path, capsys,
                                                                             monkeypatch):
    _fail_fast(monkeypatch)
    from lrkit.cli import check_distinct_paths

    check_distinct_paths({"--json": "/dev/null", "--csv": "/dev/null"}, {})  # no collision
    check_distinct_paths({"--json": "-", "--yaml": "-"}, {})
    db = tmp_path / "x.db"
    code = main(["sweep", "wine-logreg", "--storage", f"sqlite:///{db}", "--json", str(db)])
    assert code == 2 and "is also --storage" in capsys.readouterr().err
