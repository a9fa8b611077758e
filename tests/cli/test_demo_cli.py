"""``lrkit demo``: the four parts, the files it writes, the text summary, determinism."""
import json
from types import SimpleNamespace

from lrkit.cli import build_parser, main
from tests.show.helpers import differences, quick_demo_dir, quick_summary, strip_timings


def recommend_installed() -> bool:
    try:
        from lrkit.recommend import recommend  # noqa: F401
    except ImportError:
        return False
    return True


def test_defaults():
    args = build_parser().parse_args(["demo"])
    assert args.out == "lrkit-demo" and args.seed == 0 and not args.quick


def test_quick_demo_writes_page_summary_and_overview():
    out = quick_demo_dir()
    assert {p.name for p in out.iterdir()} >= {"index.html", "summary.json", "overview.png"}
    summary = quick_summary()
    assert summary["kind"] == "lrkit.demo" and summary["example"] == "digits-mlp"
    assert summary["quick"] is True and summary["budget_steps"] == 100
    # (1) the range test
    assert summary["suggested_lr"] == summary["finder"]["suggested_lr"] > 0
    lo, hi = summary["good_range"]
    assert lo <= summary["suggested_lr"] <= hi
    # (2) three rates, same budget, each diagnosed
    for table in summary["comparison"]["tables"]:
        assert [r["lr"] for r in table["results"]] == [0.5, 0.1, 0.001]
        for r in table["results"]:
            assert r["verdict"] and r["explanation"] and len(r["losses"]) <= 100
    verdicts = [[r["verdict"] for r in t["results"]] for t in summary["comparison"]["tables"]]
    assert any(v[0] in ("diverged", "unstable") for v in verdicts)
    assert any("healthy" in v for v in verdicts)
    assert all(v[2] in ("too_slow", "plateaued") for v in verdicts)
    # (3) schedule previews
    previews = summary["schedules"]["previews"]
    assert previews[0]["spec"] == "step(44, gamma=0.9)" and previews[0]["peak"]["rate"] == 0.1
    assert abs(previews[0]["curve"][-1][1] - 0.1 * 0.9 ** 2) < 1e-12  # step 99: two epochs done
    assert previews[1]["spec"].startswith("warmup(")
    # (4) the recipe against the untuned default (wherever lrkit.recommend is installed)
    if recommend_installed():
        assert summary["recipe"] is not None, summary["recipe_unavailable"]
        assert len(previews) == 3 and previews[2]["title"] == "the recipe's schedule"
        runs = summary["recipe_vs_default"]["runs"]
        assert [r["key"] for r in runs] == ["recipe", "default"]
        assert all(len(r["losses"]) == 100 for r in runs)
        assert summary["recipe"]["total_steps"] == 100


def test_two_runs_give_the_same_summary(tmp_path, monkeypatch, capsys):
    """The second run shows its progress bars (the first does not): no difference either."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("lrkit.show.progress.sys",
                        SimpleNamespace(stderr=SimpleNamespace(isatty=lambda: True)))
    assert main(["demo", "--quick"]) == 0  # default DIR: ./lrkit-demo
    captured = capsys.readouterr()
    assert "lrkit demo:" in captured.err and "untuned default" in captured.err  # the bars
    text = captured.out
    assert "lrkit-demo/index.html" in text and "(1) range test: suggested lr" in text
    assert "(2) same budget:" in text and "(3) schedules:" in text
    if "(4) recipe:" in text:
        assert text.index("(3) schedules:") < text.index("(4) recipe:")
    again = json.loads((tmp_path / "lrkit-demo" / "summary.json").read_text())
    first = quick_summary()
    diff = differences(strip_timings(first), strip_timings(again))
    assert not diff, diff[:10]
    assert f"{first['suggested_lr']:.3g}" in text


def test_bad_option(capsys):
    try:
        main(["demo", "--seed", "x"])
    except SystemExit as exc:
        assert exc.code == 2
    assert "invalid int value" in capsys.readouterr().err
