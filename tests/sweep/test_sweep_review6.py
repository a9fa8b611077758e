"""Sweep defects found in a second review of storage and resume: a torn write in the middle of a
running sweep's journal, interruptions counted as failures, and what --json left out."""
import json

import optuna

from lrkit.sweep.optuna_engine import StorageHandle


def test_a_torn_write_by_a_killed_writer_is_cut_before_the_next_append(tmp_path):
    path = tmp_path / "sweeps.journal"
    storage = StorageHandle(str(path)).open()  # a sweep already running on the journal
    study = optuna.create_study(storage=storage, study_name="s")
    study.enqueue_trial({"x": 1.0})
    # another writer, killed by kill -9 in the middle of its record
    with open(path, "ab") as f:
        f.write(b'{"op_code":8,"worker_id":"dead","trial_id":0,"user_attr":{"stat')
    study.enqueue_trial({"x": 2.0})  # the running sweep's next append
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""  # ends with a whole record
    for line in lines[:-1]:  # every line a record (it was glued to the torn bytes: unreadable)
        assert json.loads(line)["op_code"] is not None
    assert b"dead" not in path.read_bytes()
    again = optuna.load_study(storage=StorageHandle(str(path)).open(), study_name="s")
    assert len(again.get_trials()) == 2  # both enqueued trials read back
