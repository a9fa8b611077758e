"""The HTML report: kinds of saved results, sections, escaping, self-containment, the CLI."""
import json
import re

import pytest

from lrkit.cli import main
from lrkit.errors import LrkitError
from lrkit.show import report as rp
from tests.show.helpers import quick_demo_dir, quick_summary

EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def finder_dict():
    import lrkit
    from lrkit import examples

    problem = examples.build("wine-logreg", seed=0)
    return lrkit.find_lr(problem.model, problem.optimizer, problem.train_loader, problem.criterion,
                         num_steps=40, progress=False).to_dict()


def diagnosis_dict():
    import numpy as np

    import lrkit

    losses = 2.0 * np.exp(-np.arange(200) / 40) + 0.1 + 0.01 * np.sin(np.arange(200))
    return lrkit.diagnose(losses).to_dict()


def sweep_dict(study_name="digits"):
    """The shape of ``SweepResult.to_dict()`` (no "kind" key): detected by its keys."""
    point = {"optimizer": "sgd", "lr": 0.1, "status": "finished", "loss": 0.2, "loss_sd": None,
             "seeds": 1, "losses": [0.2], "metric": 0.9, "steps": 100, "trials": [0],
             "diagnosis": "healthy (keep, 90%)"}
    return {"study_name": study_name, "storage": "x", "strategy": "bracket", "settings": {},
            "best": point, "band": [0.05, 0.2], "band_tolerance": 0.02,
            "best_by_optimizer": {"sgd": point}, "bands_by_optimizer": {"sgd": [0.05, 0.2]},
            "diverged_from": {"sgd": 1.0}, "seed_comparison": None, "total_steps": 300,
            "points": [point, dict(point, lr=0.01, loss=0.5, diagnosis="too_slow"),
                       dict(point, lr=1.0, status="diverged", loss=None, diagnosis=None)],
            "trials": [{"number": 0}]}


def schedule_dict():
    from lrkit.schedules import preview

    return preview("warmup(10) >> cosine(90)", 100, lr=0.1).to_dict()


def recipe_dict():
    return {"kind": "lrkit.recipe", "optimizer": "SGD",
            "optimizer_options": {"momentum": 0.9}, "peak_lr": 0.05, "warmup_steps": 10,
            "total_steps": 100, "schedule": "warmup(10) >> cosine(90, floor=0.1)",
            "good_range": [0.01, 0.1], "batch_size": 32, "notes": ["a note"], "evidence": {}}


# -- kinds -------------------------------------------------------------------------------------

def test_kinds_are_read_from_the_kind_key_or_the_keys():
    assert rp.detect_kind(finder_dict()) == rp.FINDER
    no_kind = finder_dict()
    del no_kind["kind"]
    assert rp.detect_kind(no_kind) == rp.FINDER
    assert rp.detect_kind(sweep_dict()) == rp.SWEEP
    assert rp.detect_kind(diagnosis_dict()) == rp.DIAGNOSIS
    cli_json = {"file": "run.csv", "format": "csv", "points": 200, "validation_points": 0,
                **diagnosis_dict()}
    assert rp.detect_kind(cli_json) == rp.DIAGNOSIS  # "points" is a count here, not a sweep
    assert rp.detect_kind({"example": "digits-mlp", "steps": 10, "note": None, "tables": [
        {"optimizer": "SGD", "results": [{"lr": 0.1, "verdict": "healthy"}]}]}) \
        == rp.DIAGNOSE_EXAMPLE
    assert rp.detect_kind(schedule_dict()) == rp.SCHEDULE
    assert rp.detect_kind(recipe_dict()) == rp.RECIPE
    no_kind = recipe_dict()
    del no_kind["kind"]
    assert rp.detect_kind(no_kind) == rp.RECIPE
    assert rp.detect_kind({"recipe": no_kind, "other": 1}) == rp.RECIPE
    assert rp.detect_kind(quick_summary()) == rp.DEMO


@pytest.mark.parametrize("bad", [[], {"a": 1}, "text", {"kind": "something.else"}])
def test_unknown_results_are_refused_with_their_keys(bad):
    with pytest.raises(LrkitError, match="not a saved lrkit result|expected a JSON object"):
        rp.detect_kind(bad)


def test_load_result_names_the_file(tmp_path):
    bad = tmp_path / "notjson.json"
    bad.write_text("{oops")
    with pytest.raises(LrkitError, match="notjson.json.*not JSON"):
        rp.load_result(bad)
    with pytest.raises(LrkitError, match="cannot read"):
        rp.load_result(tmp_path / "missing.json")
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    with pytest.raises(LrkitError, match="other.json.*keys: hello"):
        rp.load_result(other)


# -- the page ----------------------------------------------------------------------------------

def assert_self_contained(page: str):
    assert "<script" not in page.lower()
    for attr in re.findall(r'(?:src|href)="([^"]*)"', page):
        assert attr.startswith(("data:", "#")), attr
    assert "@import" not in page and "url(" not in page


def test_every_kind_renders_a_self_contained_page_with_unique_ids():
    results = [("f.json", finder_dict()), ("g.json", finder_dict()), ("s.json", sweep_dict()),
               ("d.json", diagnosis_dict()), ("p.json", schedule_dict()),
               ("r.json", recipe_dict()), ("w.json", {"recipe": recipe_dict()})]
    page = rp.render_page(results)
    assert_self_contained(page)
    ids = re.findall(r'id="([^"]+)"', page)
    assert len(ids) == len(set(ids))
    assert 'id="suggested-lr"' in page and 'id="suggested-lr-2"' in page
    assert 'id="best-lr"' in page and 'id="verdict"' in page and 'id="recipe-peak-lr-2"' in page
    assert page.count('<img') >= 5
    first = results[0][1]["suggested_lr"]
    match = re.search(r'id="suggested-lr"[^>]*data-value="([^"]+)">([^<]+)<', page)
    assert float(match.group(1)) == first and match.group(2) == format(first, ".3g")


def test_user_text_is_escaped():
    summary = quick_summary()
    summary["example"] = EVIL
    summary["comparison"]["note"] = EVIL
    sweep = sweep_dict(study_name=EVIL)
    recipe = dict(recipe_dict(), notes=[EVIL])
    diagnosis = dict(diagnosis_dict(), file=EVIL)
    page = rp.render_page([(EVIL, summary), (EVIL + ".json", sweep), ("r", recipe),
                           ("d", diagnosis)], title=EVIL, subtitle=EVIL)
    assert "<script>" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert_self_contained(page)


def test_demo_page_has_the_four_parts_and_the_summary_rate():
    out = quick_demo_dir()
    page = (out / "index.html").read_text()
    summary = quick_summary()
    for anchor in ("why", "find", "compare", "schedules", "recipe"):
        assert f'<section id="{anchor}">' in page
    assert_self_contained(page)
    rate = re.search(r'id="suggested-lr"[^>]*data-value="([^"]+)">([^<]+)<', page)
    assert float(rate.group(1)) == summary["suggested_lr"] == summary["finder"]["suggested_lr"]
    assert rate.group(2) == format(summary["suggested_lr"], ".3g")
    assert (out / "overview.png").stat().st_size > 10_000


def test_report_cli_on_saved_results(tmp_path, capsys):
    finder = tmp_path / "finder.json"
    assert main(["find", "wine-logreg", "--steps", "40", "--no-progress", "--json",
                 str(finder)]) == 0
    sched = tmp_path / "schedule.json"
    assert main(["schedule", "show", "warmup(10) >> cosine(90)", "--steps", "100",
                 "--json", str(sched)]) == 0
    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps(sweep_dict()))
    diag = tmp_path / "diag.json"
    diag.write_text(json.dumps(diagnosis_dict()))
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps(recipe_dict()))
    evil = tmp_path / (EVIL.replace("/", "") + ".json")
    evil.write_text(json.dumps(diagnosis_dict()))
    capsys.readouterr()
    out = tmp_path / "page"
    assert main(["report", str(finder), str(sched), str(sweep), str(diag), str(recipe),
                 str(evil), str(quick_demo_dir() / "summary.json"), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for kind in ("lrkit.finder", "lrkit.schedule", "lrkit.sweep", "lrkit.diagnosis",
                 "lrkit.recipe", "lrkit.demo"):
        assert kind in text
    page = (out / "index.html").read_text()
    assert_self_contained(page)
    assert "<script>" not in page and "&lt;script&gt;" in page
    saved = json.loads(finder.read_text())["suggested_lr"]
    assert f'data-value="{saved!r}"' in page


def test_report_cli_errors(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"nothing": "here"}')
    assert main(["report", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "bad.json" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    with pytest.raises(SystemExit):
        main(["report"])


@pytest.mark.parametrize("stub, missing", [
    ({"kind": "lrkit.finder"}, "'lrs', 'losses', 'suggested_lr'"),
    ({"kind": "lrkit.finder", "lrs": [], "losses": []}, "'suggested_lr'"),
    ({"kind": "lrkit.recipe", "optimizer": "SGD"}, "'peak_lr', 'schedule'"),
    ({"kind": "lrkit.demo"}, "'finder', 'comparison', 'schedules'"),
    ({"kind": "lrkit.schedule", "curve": []}, "'key_points'"),
])
def test_a_stub_with_only_a_kind_is_refused_naming_what_is_missing(stub, missing, tmp_path,
                                                                   capsys):
    with pytest.raises(LrkitError, match=f"lacks {re.escape(missing)}"):
        rp.detect_kind(stub)
    path = tmp_path / "stub.json"
    path.write_text(json.dumps(stub))
    assert main(["report", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "stub.json" in err and missing in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_sweep_seed_sentence_shows_the_threshold():
    cmp = {"difference": 0.1481, "standard_error": 0.0838, "threshold": 0.1676,
           "significant": False, "best": {}, "runner_up": {}}
    page = rp.render_page([("s.json", dict(sweep_dict(), seed_comparison=cmp))])
    assert "is within seed noise (threshold 0.1676 = 2 x standard error 0.0838)" in page
    del cmp["threshold"]  # saved by an older lrkit
    page = rp.render_page([("s.json", dict(sweep_dict(), seed_comparison=cmp))])
    assert "(threshold 0.1676 = 2 x standard error 0.0838)" in page


def test_report_out_onto_an_existing_file_is_refused(tmp_path, capsys):
    diag = tmp_path / "diag.json"
    diag.write_text(json.dumps(diagnosis_dict()))
    taken = tmp_path / "taken.html"
    taken.write_text("mine")
    assert main(["report", str(diag), "--out", str(taken)]) == 2
    assert "is an existing file, not a directory" in capsys.readouterr().err
    assert taken.read_text() == "mine"
    with pytest.raises(LrkitError, match="is an existing file"):
        rp.write_page("<html></html>", taken)


def test_a_finder_without_suggestion_gives_its_own_reason_in_the_headline():
    data = finder_dict()
    nan_first = dict(data, suggested_lr=None, good_range=None, warnings=[
        "the very first loss was nan, before any update at any rate: the model or the data give "
        "non-finite values as they are"])
    page = rp.render_page([("f.json", nan_first)])
    assert "No suggestion: the very first loss was nan" in page
    assert "never fell" not in page.split('class="headline"')[1].split("</p>")[0]
    never = dict(data, suggested_lr=None, good_range=None, warnings=[])
    assert "No suggestion: the loss never fell" in rp.render_page([("f.json", never)])


def test_a_finder_section_says_how_noisy_the_gradient_was_and_the_fraction_edge_took():
    data = finder_dict()
    assert data["gradient_noise"] > 0
    page = rp.render_page([("f.json", data)])
    line = re.search(r'<p id="gradient-noise[^"]*">([^<]*)</p>', page)
    assert line and line.group(1).startswith("Gradient noise: ")
    assert f"edge took {data['settings']['edge_fraction']:.2g}x" in line.group(1)
    unmeasured = dict(data, gradient_noise=None)
    assert 'id="gradient-noise' not in rp.render_page([("f.json", unmeasured)])


def test_a_schedule_preview_with_compared_schedules_shows_them_all(tmp_path, capsys):
    # lrkit schedule show --compare writes the compared previews under "compare"; the page
    # left them out
    sched = tmp_path / "schedule.json"
    assert main(["schedule", "show", "peak(warmup(50) >> cosine(450), 3e-4)", "--compare",
                 "onecycle(500)", "cosine(500)", "--json", str(sched)]) == 0
    data = json.loads(sched.read_text())
    assert [c["spec"] for c in data["compare"]] == ["onecycle(500)", "cosine(500)"]
    out = tmp_path / "page"
    assert main(["report", str(sched), "--out", str(out)]) == 0
    capsys.readouterr()
    page = (out / "index.html").read_text()
    assert_self_contained(page)
    assert "compared: <code>onecycle(500)</code> at lr 1, 500 steps" in page
    assert "compared: <code>cosine(500)</code>" in page
    onecycle_peak = max(rate for _, rate in data["compare"][0]["curve"])
    assert f"{onecycle_peak:.4g}" in page  # its key points, not only its name
    assert page.count("<img") == 1  # the three on one figure, each on its own axes
