"""``lrkit diagnose``: files, --json, errors, and the built-in example."""
import argparse
import json

import numpy as np
import pytest

from lrkit.cli import diagnose as cli


def _run(argv, capsys):
    parser = argparse.ArgumentParser(prog="lrkit")
    sub = parser.add_subparsers(dest="command")
    cli.register(sub)
    args = parser.parse_args(argv)
    code = args.func(args)
    return code, capsys.readouterr().out


def _write_csv(path, values):
    path.write_text("step,loss,lr\n" + "\n".join(f"{i},{v},0.01" for i, v in enumerate(values)))


def test_text_and_json_output(tmp_path, capsys):
    path = tmp_path / "loss.csv"
    _write_csv(path, np.linspace(2.3, 2.0, 200))
    code, out = _run(["diagnose", str(path)], capsys)
    assert code == 0 and "verdict: too_slow" in out and "200 loss values (csv)" in out
    code, out = _run(["diagnose", str(path), "--json"], capsys)
    data = json.loads(out)
    assert data["verdict"] == "too_slow" and data["format"] == "csv" and data["points"] == 200
    assert data["suggested_lr"] == pytest.approx(0.01 * data["lr_factor"])


def test_errors_go_through_the_dispatcher(tmp_path, capsys):
    from lrkit.cli import main

    bad = tmp_path / "bad.csv"
    bad.write_text("step,loss\n0,1\n1,oops\n")
    try:
        code = main(["diagnose", str(bad)])
    except SystemExit as exc:  # pragma: no cover - another sub-command failed to register
        pytest.skip(f"the CLI dispatcher could not build its parser: {exc}")
    err = capsys.readouterr().err
    assert code == 2 and "line 3" in err and "oops" in err
    assert main(["diagnose"]) == 2
    assert "give a loss log FILE" in capsys.readouterr().err


def test_example_demo_json(capsys):
    code, out = _run(["diagnose", "--example", "--json", "--steps", "200"], capsys)
    data = json.loads(out)
    assert code == 0 and data["example"] == "digits-mlp"
    first = data["tables"][0]
    assert [r["lr"] for r in first["results"]] == [0.5, 0.1, 0.001]
    assert first["results"][0]["verdict"] in ("diverged", "unstable")
    assert first["results"][2]["verdict"] in ("too_slow", "plateaued")
    if len(data["tables"]) > 1:
        assert "plain SGD" in data["tables"][1]["optimizer"] and data["note"]


def test_a_non_utf8_log_and_a_zero_step_count_exit_2(tmp_path, capsys):
    from lrkit.cli import main

    path = tmp_path / "excel.csv"
    path.write_bytes(b"step,loss\n0,1\n1,\xff\n")
    assert main(["diagnose", str(path)]) == 2
    err = capsys.readouterr().err
    assert "is not UTF-8 text" in err and "Traceback" not in err
    assert main(["diagnose", "--example", "--steps", "0"]) == 2
    assert "--steps must be an integer >= 8" in capsys.readouterr().err
    with pytest.raises(Exception, match="steps must be an integer >= 8"):
        cli.demo_runs(steps=0)


def test_the_demo_refuses_runs_shorter_than_a_diagnosis_needs(capsys):
    from lrkit.cli import main

    # 5 steps gave six "not_enough_data" verdicts and a note claiming the three cases
    assert main(["diagnose", "--example", "--steps", "5"]) == 2
    err = capsys.readouterr().err
    assert "--steps must be an integer >= 8" in err and "Traceback" not in err


def test_the_demo_refuses_a_tag_it_would_ignore(capsys):
    from lrkit.cli import main

    assert main(["diagnose", "--example", "--tag", "loss"]) == 2
    assert "drop --tag" in capsys.readouterr().err


def test_the_demo_note_claims_the_three_cases_only_when_they_are_there():
    demo = cli.demo_runs(steps=20)  # too short for a healthy run with either optimizer
    verdicts = {r["diagnosis"].verdict for t in demo["tables"] for r in t["results"]}
    assert "healthy" not in verdicts
    assert "together the two show" not in demo["note"]
    assert "neither shows a too-high, a right and a too-low rate at 20 steps" in demo["note"]
