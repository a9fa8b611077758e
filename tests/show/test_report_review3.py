"""The report, found in a code review: a long recipe's plot axis, section ids with a demo beside
other results, a file name that is not UTF-8, and the demo's output files checked up front."""
import os
import re

import pytest

from lrkit.cli import main
from lrkit.show import report as rp
from tests.show.helpers import quick_summary
from tests.show.test_report import recipe_dict


def test_a_long_recipes_rates_are_read_at_their_own_steps():
    # the plot drew the rates every 10th step against their positions: a 20,000-step recipe's
    # axis ended at 1999, and its warmup (1000 steps) read as 100
    data = {**recipe_dict(), "total_steps": 20000, "warmup_steps": 1000,
            "schedule": "warmup(1000) >> cosine(19000)"}
    steps, rates = rp._recipe_rates(data, rp._recipe_object(data))
    assert len(steps) == len(rates) and steps[-1] >= 19990
    assert steps[rates.index(max(rates))] == 1000


def test_a_demo_beside_other_results_has_unique_section_ids():
    # the demo's fixed "recipe" anchor and a recipe file's section shared one id, and the nav
    # link "Recipe" jumped to the demo's part 4
    page = rp.render_page([("demo/summary.json", quick_summary()), ("r.json", recipe_dict()),
                           ("demo2/summary.json", quick_summary())])
    ids = re.findall(r'id="([^"]+)"', page)
    assert len(ids) == len(set(ids))
    for anchor in re.findall(r'<a href="#([^"]+)"', page):
        assert anchor in ids


@pytest.mark.skipif(os.name == "nt", reason="POSIX file names")
def test_a_file_name_that_is_not_utf8_is_shown_and_the_old_page_is_kept_on_failure(tmp_path,
                                                                                  capsys):
    # a name Python keeps as lone surrogates raised UnicodeEncodeError while writing, and left
    # an empty index.html where the good page had been
    import json

    name = os.fsdecode(b"caf\xe9.json")
    (tmp_path / name).write_text(json.dumps(recipe_dict()))
    out = tmp_path / "page"
    assert main(["report", str(tmp_path / name), "--out", str(out)]) == 0
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "caf" in page and len(page) > 1000
    assert not [p for p in os.listdir(out) if p.startswith(".index.html")]  # no temporary left


def test_the_demo_refuses_an_output_it_cannot_write_before_training(tmp_path, capsys):
    (tmp_path / "index.html").mkdir()
    assert main(["demo", "--quick", "--no-progress", "--out", str(tmp_path)]) == 2
    assert "index.html there is a directory" in capsys.readouterr().err
    assert not (tmp_path / "summary.json").exists()  # nothing trained, nothing written
