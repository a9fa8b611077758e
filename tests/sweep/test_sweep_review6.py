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


def test_interrupted_attempts_do_not_use_up_a_rates_retries(tmp_path):
    # Ctrl-C four times during the same trial (max_retries=3) had recorded its rate as failed
    # for good, and the walk went another way than an uninterrupted sweep's
    import pytest

    import lrkit

    interrupts = [4]

    def recipe(seed):
        problem = lrkit.examples.build("wine-logreg", seed=seed)
        batches = problem.train_loader

        class Interrupting:
            def __iter__(self):
                if interrupts[0] > 0:
                    interrupts[0] -= 1
                    raise KeyboardInterrupt
                return iter(batches)

            def __len__(self):
                return len(batches)

        problem.train_loader = Interrupting()
        return problem

    options = dict(lrs="1e-3:1", points_per_decade=2, budget=40, progress=False,
                   study_name="s")
    journal = str(tmp_path / "a.journal")
    for _ in range(4):
        with pytest.raises(KeyboardInterrupt):
            lrkit.sweep(recipe, storage=journal, **options)
    resumed = lrkit.sweep(recipe, storage=journal, **options)
    plain = lrkit.sweep(recipe, storage=str(tmp_path / "b.journal"), **options)
    assert [(p.lr, p.status) for p in resumed.points()] == [(p.lr, p.status)
                                                           for p in plain.points()]
    assert resumed.best_lr == plain.best_lr
    assert "failed" not in {p.status for p in resumed.points()}


def test_a_local_module_the_recipe_imports_is_part_of_its_digest(tmp_path):
    # an edit to helper.py (the loss x100) was not noticed, and a resume returned the results
    # of the old code
    from lrkit.sweep.api import problem_imports, problem_source
    from lrkit.sweep.config import comparable, setting_differences

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("")
    (tmp_path / "models" / "mlp.py").write_text("WIDTH = 32\n")
    (tmp_path / "helper.py").write_text("from models.mlp import WIDTH\nSCALE = 1.0\n")
    (tmp_path / "unrelated.py").write_text("X = 1\n")
    recipe = tmp_path / "train.py"
    recipe.write_text("import os\nimport helper\n\ndef make(seed):\n    return helper.SCALE\n")
    spec = f"{recipe}:make"
    source, first = problem_source(spec), problem_imports(spec)
    assert first is not None
    (tmp_path / "unrelated.py").write_text("X = 2\n")  # not imported: no other study
    assert problem_imports(spec) == first
    (tmp_path / "helper.py").write_text("from models.mlp import WIDTH\nSCALE = 100.0\n")
    second = problem_imports(spec)
    assert second != first and problem_source(spec) == source  # the file itself is unchanged
    (tmp_path / "models" / "mlp.py").write_text("WIDTH = 64\n")  # imported through helper
    assert problem_imports(spec) not in (first, second)
    # a study stored before the imports' digest was kept resumes (it was refused as edited)
    stored = {"problem": spec, "problem_source": source}
    wanted = {"problem": spec, "problem_source": source, "problem_imports": second}
    assert setting_differences(stored, comparable(stored, wanted)) == []
    edited = {**stored, "problem_imports": first}
    assert setting_differences(edited, comparable(edited, wanted)) != []
    assert problem_imports(f"{tmp_path / 'unrelated.py'}:f") is None  # imports nothing local


def test_a_journal_that_cannot_be_written_is_a_clear_error(tmp_path, monkeypatch):
    # a read-only directory: a raw OSError from inside Optuna (the CLI's message sent the user to
    # --out, which lrkit sweep does not have)
    import pytest
    from optuna.storages.journal import JournalFileBackend

    import lrkit
    from lrkit.errors import LrkitError

    def read_only(self, *args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(JournalFileBackend, "__init__", read_only)
    with pytest.raises(LrkitError, match=r"cannot write the sweep's journal file .*--storage.*"
                                         r"Read-only file system; give a path in a writable"):
        lrkit.sweep("logreg", storage=str(tmp_path / "s.journal"), budget=20, progress=False)


def test_the_json_holds_the_notes_the_summary_shows(tmp_path):
    # "the best rate is the highest tried" and the like were in the text alone: a pipeline
    # reading --json could not tell that the chosen rate was in doubt
    import lrkit

    result = lrkit.sweep("wine-logreg", storage=str(tmp_path / "s.journal"), lrs="1e-3:0.1",
                         points_per_decade=4, budget=60, progress=False)
    notes = result.notes()
    assert any("the best rate is the highest tried" in n for n in notes)
    assert all(n.strip() in result.summary() for n in notes)
    data = json.loads(result.to_json())
    assert data["notes"] == notes
    assert not any(n.startswith("best:") for n in notes)  # the answer itself is no note


def test_a_queued_retry_the_finished_plan_does_not_need_is_no_unfinished_work():
    # a worker killed inside a speculative trial after the plan was done: its retry stays queued,
    # and every run said "the sweep is not finished, run the same command again"
    from lrkit.sweep.results import SweepResult, TrialRecord

    records = [TrialRecord(number=i, optimizer="sgd", lr=lr, seed=0, status="finished",
                           loss=loss) for i, (lr, loss) in enumerate([(0.1, 0.5), (1.0, 0.4)])]
    records += [TrialRecord(number=2, optimizer="sgd", lr=0.03, seed=0, status="failed"),
                TrialRecord(number=3, optimizer="sgd", lr=0.03, seed=0, status="waiting")]
    done = SweepResult(records, settings={}, complete=True)
    assert "not finished" not in done.summary() and "best: lr=1" in done.summary()
    still = SweepResult(records, settings={}, complete=False)  # the plan still wants it
    assert "not finished" in still.summary()


def test_rates_given_as_a_float32_tensor_are_stored_as_written(tmp_path):
    # 1e-3 in float32 was stored as 0.0010000000475, and lrs="0.001" reused none of it
    import torch

    from lrkit.sweep.space import parse_rates

    assert parse_rates(torch.tensor([1e-3, 1e-2])).values == (0.001, 0.01)
    assert parse_rates(torch.tensor(3e-4)).values == (0.0003,)
    assert parse_rates(torch.tensor([1e-3], dtype=torch.float64)).values == (0.001,)


def test_a_storage_that_is_not_a_path_is_refused(tmp_path, monkeypatch):
    import pytest

    import lrkit
    from lrkit.errors import LrkitError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(LrkitError, match="storage must be a journal file path or a database URL "
                                         r"\(a str\), got int 123"):
        lrkit.sweep("wine-logreg", storage=123, budget=20, progress=False)
    assert not (tmp_path / "123").exists()


def test_a_loss_that_is_not_finite_before_any_update_stops_the_sweep_with_the_cause(tmp_path):
    # NaN at the first step, before any update: the sweep walked down five rates and advised
    # "lower the range", which changes nothing
    import pytest

    import lrkit
    from lrkit.errors import LrkitError

    def recipe(seed):
        problem = lrkit.examples.build("wine-logreg", seed=seed)
        x, y = problem.train_loader.tensors
        problem.train_loader = [(x[:32] * float("nan"), y[:32])]
        return problem

    with pytest.raises(LrkitError, match="nan at the very first step, before any update.*"
                                         "check the inputs"):
        lrkit.sweep(recipe, storage=str(tmp_path / "s.journal"), budget=20, progress=False,
                    study_name="nan")


def test_a_loss_the_rate_does_not_change_gets_a_note_not_a_confident_best():
    from lrkit.sweep.results import SweepResult, TrialRecord

    records = [TrialRecord(number=i, optimizer="sgd", lr=lr, seed=0, status="finished", loss=1.0)
               for i, lr in enumerate([0.01, 0.1, 1.0])]
    result = SweepResult(records, settings={}, complete=True)
    assert any("does not depend on the rate" in n for n in result.notes())
    varied = [TrialRecord(number=i, optimizer="sgd", lr=lr, seed=0, status="finished", loss=loss)
              for i, (lr, loss) in enumerate([(0.01, 1.0), (0.1, 0.5), (1.0, 0.7)])]
    assert not any("does not depend" in n for n in SweepResult(varied, settings={}).notes())
