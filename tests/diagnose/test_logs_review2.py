"""Log readers, found in a new user's walk: a JSON object over several lines, columns in one
object, an lrkit result given as a log, a header without rows, an empty JSONL file."""
import json

import pytest

from lrkit.diagnose.logs import read_log
from lrkit.errors import LrkitError


def test_one_record_over_several_lines_is_read(tmp_path):
    """It went to the JSONL reader: "line 1: not valid JSON", for a file json.tool accepts."""
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"step": 0, "loss": 2.0, "lr": 0.1}, indent=2))
    log = read_log(path)
    assert log.losses == [2.0] and log.lrs == [0.1]


def test_columns_in_one_object_are_read_as_rows(tmp_path):
    path = tmp_path / "columns.json"
    path.write_text(json.dumps({"step": [0, 10, 20], "loss": [2.0, 1.5, 1.2],
                                "lr": [0.1, 0.1, 0.1]}, indent=1))
    log = read_log(path)
    assert log.steps == [0, 10, 20] and log.losses == [2.0, 1.5, 1.2]


def test_an_lrkit_result_is_refused_as_a_log(tmp_path):
    path = tmp_path / "finder.json"
    path.write_text(json.dumps({"kind": "lrkit.finder", "lrs": [1e-5, 1e-4],
                                "losses": [2.0, 1.9]}, indent=1))
    with pytest.raises(LrkitError, match="lrkit's own lrkit.finder result, not a training"):
        read_log(path)


def test_an_object_of_neither_form_names_its_keys(tmp_path):
    path = tmp_path / "odd.json"
    path.write_text(json.dumps({"loss": [1.0, 2.0], "step": [0]}, indent=1))
    with pytest.raises(LrkitError, match="keys loss, step, which is neither one record"):
        read_log(path)


@pytest.mark.parametrize("name, text, fragment", [
    ("header.csv", "step,loss,lr\n", "has a 'loss' column but no row with a loss"),
    ("pandas.csv", ",loss\n", "has a 'loss' column but no row with a loss"),
    ("empty.jsonl", "\n\n", "is empty: it holds no record"),
])
def test_a_log_with_nothing_logged_says_so(tmp_path, name, text, fragment):
    """"the log needs a 'loss' column" for a header that has one."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(LrkitError, match=fragment):
        read_log(path)


def test_nested_values_beside_a_record_or_columns_are_left_aside(tmp_path):
    """(From the diff review) a record with a dict of metrics, or columns beside a list of
    dicts, were refused as "neither one record nor columns"."""
    record = tmp_path / "record.json"
    record.write_text(json.dumps({"step": 1, "loss": 2.0, "metrics": {"acc": 0.5}}))
    assert read_log(record).losses == [2.0]
    columns = tmp_path / "columns.json"
    columns.write_text(json.dumps({"step": [1, 2], "loss": [3.0, 2.0], "extra": [{}, {}]}))
    assert read_log(columns).losses == [3.0, 2.0]
