"""Glue between the sweep (strategy + trial runner) and Ray Tune: a sweep is one Tune experiment.

``lrkit.sweep(..., engine="ray")`` runs the same trials as the Optuna engine
(:func:`lrkit.sweep.trial.run_trial`, its ``report`` wired to ``ray.tune.report``) and plans
them with the same :class:`~lrkit.sweep.strategy.Strategy`; Ray Tune places the trials on the
cluster's CPUs, retries a trial whose worker or node died, and stores the experiment.

* **Planning: a Tune Searcher.** :class:`LrkitSearcher` is a ``ray.tune.search.Searcher``
  whose ``suggest`` asks ``Strategy.plan`` (over the trials it was told of) what to run next: a
  planned trial, else, while the plan waits for running trials, a speculative one (as an idle
  Optuna worker would take), else nothing yet; ``Searcher.FINISHED`` when the plan is done. One
  ``Tuner.fit`` runs the whole sweep, so Ray keeps its trial actors (``reuse_actors``) and each
  optimizer's walk goes on as soon as its last trial ends. Running the strategy's stages as
  successive ``Tuner`` runs was the other way: every stage would start new actors (a torch
  import and the recipe's data each time) and wait for its slowest trial, and resuming would
  have to stitch several experiments together.
* **Early stopping: in the trial, by the strategy.** ``report(step, value)`` sends the rung value
  to Tune (``tune.report``) and returns ``Strategy.should_prune`` on the trial's reference (the
  lower rate it is compared with), whose rung values the Searcher put in the trial's config.
  Every planned trial's reference is finished before the trial is proposed (the walk is
  sequential), and a speculative trial whose reference still runs is not proposed, so the
  decisions are exactly those of the Optuna engine's pruner. A Tune ``TrialScheduler`` was not
  used: its ``STOP`` ends the trial's function from outside, so ``run_trial`` would not return
  its outcome (status ``pruned``, curve, diagnosis) and the record would differ from Optuna's.
* **Storage and resume.** The experiment lives in ``<storage>/<study_name>`` (Tune's
  ``storage_path`` and ``name``; default storage ``.lrkit/ray``), with ``lrkit-sweep.json``
  beside it holding the sweep's settings. The Searcher's state (``save``/``restore``) is part of
  Tune's experiment state, which lrkit has Tune write at every step
  (``TUNE_GLOBAL_CHECKPOINT_S=0``), so a sweep killed at any point (``kill -9`` of the driver
  included) is resumed by the same call through ``Tuner.can_restore`` / ``Tuner.restore``:
  finished trials are kept, unfinished ones run again. Other settings are refused. Tune's copy
  of its state files to the storage writes them in place, so a kill can leave one cut short,
  and Tune's restore would then start the experiment over: :func:`_check_resumable` checks
  them first (a torn session is set aside, or a clear error raised) and the Searcher rebuilds
  a torn state of its own from Tune's experiment state (:meth:`Planner.rebuild`).
* **Failures.** A trial that raises, or whose worker or node dies, is retried by Ray up to
  ``max_retries`` times (``FailureConfig(max_failures=...)``); then it counts as failed, as an
  Optuna trial does after ``max_retries`` failed attempts, and the sweep goes on without it.

``ray`` is imported only when this engine runs; ``import lrkit`` never imports it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import logging
import math
import os
import pickle
import sys
from typing import Any, Iterator

from lrkit.errors import LrkitError, require
from lrkit.sweep.config import SweepSpec, comparable, setting_differences
from lrkit.sweep.results import SweepResult, TrialRecord
from lrkit.sweep.space import lr_key
from lrkit.sweep.strategy import (DIVERGED, FAILED, FINISHED, PRUNED, RUNNING, WAITING,
                                  Observation, Point)
from lrkit.sweep.trial import run_trial

DEFAULT_STORAGE = os.path.join(".lrkit", "ray")
MARKER = "lrkit-sweep.json"
#: Tune result keys of lrkit's reports
STEP, VALUE, STATUS, OUTCOME = "lrkit_step", "lrkit_value", "lrkit_status", "lrkit_outcome"
_STATUS_RANK = {FINISHED: 0, DIVERGED: 0, PRUNED: 0, RUNNING: 1, WAITING: 2, FAILED: 3}
#: Tune's state files in the experiment directory, one of each per session (driver run)
_STATE_PREFIXES = ("experiment_state-", "search_gen_state-", "searcher-state-",
                   "callback-states-", "basic-variant-state-")
TUNER_FILE = "tuner.pkl"
logger = logging.getLogger(__name__)


def require_ray():
    """``ray`` and ``ray.tune``, or an LrkitError saying how to install them."""
    try:
        import ray
        from ray import tune
    except ImportError:
        raise LrkitError("engine='ray' needs Ray Tune: pip install 'lrkit[ray]'") from None
    if not hasattr(tune, "RunConfig"):  # tune.RunConfig, tune.report(dict): Ray 2.41 on
        raise LrkitError(f"engine='ray' needs Ray Tune 2.41 or later (its ray.tune.RunConfig and "
                         f"tune.report), found Ray {getattr(ray, '__version__', '?')}: "
                         "pip install -U 'lrkit[ray]'")
    return ray, tune


# -- where the experiment lives -------------------------------------------------------------------
def storage_location(storage: str | None) -> str:
    """Ray Tune's ``storage_path`` for ``storage``: an absolute directory or a URI (``s3://``,
    ``gs://``, ...). A database URL or an existing file (an Optuna journal) is refused."""
    from lrkit.sweep.optuna_engine import DB_SCHEMES

    if storage is None:
        return os.path.abspath(DEFAULT_STORAGE)
    if not isinstance(storage, (str, os.PathLike)) or isinstance(storage, bytes):
        # storage=123 made a directory '123' in the working directory (as the Optuna engine's
        # StorageHandle, a path or a URI must be a str)
        raise LrkitError(f"storage must be a directory or a URI (a str) for engine='ray', got "
                         f"{type(storage).__name__} {storage!r}; omit it for the default "
                         f"{DEFAULT_STORAGE}")
    location = os.fspath(storage)
    require(isinstance(location, str), f"storage must be a directory or a URI (a str) for "
            f"engine='ray', got {storage!r}")
    require(location.strip() != "", f"storage must be a directory or a URI for engine='ray', "
            f"got {storage!r}; omit it for the default {DEFAULT_STORAGE}")
    scheme = location.split("://", 1)[0].split("+", 1)[0].lower() if "://" in location else ""
    if scheme in DB_SCHEMES:
        shown = location.split("://", 1)[0] + "://..."
        raise LrkitError(f"storage {shown!r} is a database for the Optuna engine; with "
                         "engine='ray' storage is Ray Tune's storage_path: a directory (shared "
                         "by every node on a cluster) or a URI such as s3://bucket/path")
    if scheme:
        try:  # a URI that pyarrow cannot open raised its own error (ArrowInvalid, OSError)
            _filesystem(location)
        except Exception as exc:  # noqa: BLE001 - ArrowInvalid, OSError (libjvm), ImportError
            text = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise LrkitError(f"storage {location!r} cannot be opened as Ray Tune's storage_path "
                             f"({type(exc).__name__}: {text}); give a directory, or a URI of a "
                             "filesystem pyarrow supports (s3://bucket/path, gs://bucket/path, "
                             "...) with its client set up") from None
        return location
    path = os.path.abspath(location)
    require(not os.path.isfile(path), f"storage {location!r} is a file (an Optuna journal?); "
            "with engine='ray' storage is a directory for Ray Tune's experiments")
    if path == os.path.abspath(DEFAULT_STORAGE):  # the default, named: created as when omitted
        return path
    parent = os.path.dirname(path)
    require(os.path.isdir(parent), f"storage {location!r}: {parent!r} is not an existing "
            "directory; create it first or pick another path")
    return path


def _filesystem(location: str):
    """``(pyarrow filesystem, path)`` of a storage location (local or a URI)."""
    import pyarrow.fs

    if "://" in location:
        return pyarrow.fs.FileSystem.from_uri(location)
    return pyarrow.fs.LocalFileSystem(), location


def _read_marker(location: str, name: str) -> dict[str, Any] | None:
    import pyarrow.fs

    fs, root = _filesystem(location)
    path = f"{root.rstrip('/')}/{name}/{MARKER}"
    if fs.get_file_info(path).type != pyarrow.fs.FileType.File:
        return None
    with fs.open_input_stream(path) as stream:
        return json.loads(stream.read().decode("utf-8"))


def _write_marker(location: str, name: str, content: dict[str, Any]) -> None:
    fs, root = _filesystem(location)
    folder = f"{root.rstrip('/')}/{name}"
    fs.create_dir(folder, recursive=True)
    with fs.open_output_stream(f"{folder}/{MARKER}") as stream:
        stream.write(json.dumps(content, sort_keys=True, indent=1).encode("utf-8"))


def _torn(fs, path: str, kind: str) -> str | None:
    """Why Tune could not read the state file ``path`` (a JSON document, or a pickle), or None.
    Tune's copy of its files to the storage writes each in place (``pyarrow.fs.copy_files``),
    so a driver killed during a copy leaves the file cut short."""
    import ray.cloudpickle

    try:
        with fs.open_input_stream(path) as stream:
            data = stream.read()
        if kind == "json":
            state = json.loads(data.decode("utf-8"))
            for trial, metadata in state["trial_data"]:
                json.loads(trial), json.loads(metadata)
        else:
            ray.cloudpickle.loads(data)
    except Exception as exc:  # noqa: BLE001 - EOFError, JSONDecodeError, UnpicklingError, ...
        text = " ".join(str(exc).split())[:120]
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return None


def _check_resumable(location: str, name: str, where: str) -> tuple[bool, list[str]]:
    """Whether ``<location>/<name>`` holds a Tune experiment to restore (``Tuner.can_restore``),
    after checking the state files Tune reads on restore. Tune restores from its newest session's
    files, and when one of them cannot be read it logs "Failed to restore the run state" and
    starts the experiment over, so that the stored trials drop out of the sweep. A session whose
    experiment state or search-algorithm state is cut short is set aside (renamed ``*.torn``) so
    that Tune restores the session before it (trials finished since then run again); with no
    whole session left, or a torn ``tuner.pkl``, this raises an LrkitError saying what to do.
    Returns (restorable, the sessions set aside)."""
    import pyarrow.fs

    fs, root = _filesystem(location)
    folder = f"{root.rstrip('/')}/{name}"
    if fs.get_file_info(folder).type != pyarrow.fs.FileType.Directory:
        return False, []
    names = {os.path.basename(info.path) for info in
             fs.get_file_info(pyarrow.fs.FileSelector(folder))
             if info.type == pyarrow.fs.FileType.File}
    if TUNER_FILE not in names:
        return False, []
    sessions = sorted(n[len("experiment_state-"):-len(".json")] for n in names
                      if n.startswith("experiment_state-") and n.endswith(".json"))
    problem = _torn(fs, f"{folder}/{TUNER_FILE}", "pickle")
    if problem:
        if not sessions:  # killed while Tuner() wrote it: nothing ran, start afresh
            fs.delete_file(f"{folder}/{TUNER_FILE}")
            return False, []
        raise LrkitError(f"{where}: {TUNER_FILE} cannot be read ({problem}), so Ray Tune cannot "
                         "restore the experiment. Give another study_name (or remove the "
                         "experiment's directory) to run the sweep again")
    set_aside: list[str] = []
    while sessions:
        session = sessions[-1]
        problems = []
        for file, kind in ((f"experiment_state-{session}.json", "json"),
                           (f"search_gen_state-{session}.json", "pickle")):
            why = (_torn(fs, f"{folder}/{file}", kind) if file in names
                   else "missing (the driver was killed before Tune first stored it)")
            if why:
                problems.append(f"{file} {'is ' if file not in names else 'cannot be read: '}"
                                f"{why}")
        if not problems:
            return True, set_aside
        if len(sessions) == 1:
            raise LrkitError(
                f"{where}: Ray Tune's state of the experiment is damaged ({'; '.join(problems)}"
                "), probably by a driver killed while Tune copied its files to the storage; "
                "Tune cannot restore it and would start it over. Give another study_name (or "
                "remove the experiment's directory) to run the sweep again; the finished "
                "trials' reports are in their result.json files there")
        for file in sorted(names):
            if any(file == f"{prefix}{session}{ext}" for prefix in _STATE_PREFIXES
                   for ext in (".json", ".pkl")):
                fs.move(f"{folder}/{file}", f"{folder}/{file}.torn")
        logger.warning("lrkit: %s: set aside Ray Tune's state of session %s (%s); resuming from "
                       "the session before it", where, session, "; ".join(problems))
        set_aside.append(sessions.pop())
    return True, set_aside


def _drop_staged(name: str, sessions: list[str]) -> None:
    """Remove the set-aside sessions' files from Tune's staging directories of experiment
    ``name`` on this node: a restored run reuses the staging directory of the run it restores
    (within one Ray session), and Tune restores its search algorithm from the newest file there,
    which would then be one of the session set aside, not of the one its trials come from."""
    try:
        from ray.train.constants import _get_ray_train_session_dir

        root = _get_ray_train_session_dir()
    except Exception:  # noqa: BLE001 - Ray Client, or Ray's internals moved: nothing staged here
        return
    pattern = os.path.join(glob.escape(root), "*", glob.escape(name), "driver_artifacts", "*")
    for path in glob.glob(pattern):
        if _session_of(path) in sessions:
            with contextlib.suppress(OSError):
                os.remove(path)


def describe(location: str, name: str) -> str:
    return f"Ray Tune experiment {location.rstrip('/')}/{name}"


# -- the trial ------------------------------------------------------------------------------------
def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def portable(spec: SweepSpec) -> SweepSpec:
    """``spec`` with a recipe file named by its absolute path: Ray's trial processes do not run
    in the caller's directory, so ``train.py:make`` would not be found there."""
    problem = spec.problem
    if isinstance(problem, str) and ".py:" in problem:
        path, _, func = problem.rpartition(":")
        return dataclasses.replace(spec, problem=f"{os.path.abspath(path)}:{func}")
    return spec


@contextlib.contextmanager
def _working_directory(cwd: str | None) -> Iterator[None]:
    """In ``cwd`` (the caller's directory) when this node has it, as the Optuna engine's trials
    are (a recipe that opens ``data/train.csv``); else where Tune put the trial."""
    before = os.getcwd()
    if cwd and os.path.isdir(cwd):
        os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(before)


def train(config: dict[str, Any], spec: SweepSpec | None = None, threads: int = 1,
          cwd: str | None = None) -> None:
    """Tune's trainable: one lrkit trial (:func:`run_trial`), run in ``cwd`` (the caller's
    working directory) when this node has it, its rung values reported with ``tune.report``
    and stopped early by the strategy; the outcome is the last report."""
    import torch
    from ray import tune

    torch.set_num_threads(threads)
    point = Point(int(config["group"]), int(config["index"]), int(config["seed"]))
    ref = config.get("ref")
    reference = ([Observation(Point(point.group, int(ref), 0), FINISHED,
                              rungs={int(s): float(v) for s, v in config.get("ref_rungs") or []})]
                 if ref is not None else [])
    strategy = spec.strategy()
    tags = {"lrkit_number": int(config["number"]), "lrkit_group": point.group,
            "lrkit_index": point.index, "lrkit_seed": point.seed}

    def report(step: int, value: float) -> bool:
        stop = strategy.should_prune(point, None if ref is None else int(ref), step, value,
                                     reference)
        tune.report({STEP: int(step), VALUE: float(value), "lrkit_pruned": bool(stop), **tags})
        return stop

    with _working_directory(cwd):
        outcome = run_trial(spec.trial_config(point), report).to_dict()
    status = outcome.pop("status")
    objective = outcome.pop("objective")
    outcome = {k: _finite(v) for k, v in outcome.items()}
    tune.report({STATUS: status, "lrkit_objective": _finite(objective),
                 OUTCOME: json.dumps(outcome), **tags})


def trial_name(trial) -> str:
    """``<number>-<optimizer>-lr<rate>-seed<seed>``: a Tune trial's name and directory."""
    c = trial.config
    label = "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in str(c["optimizer"]))
    return f"{c['number']}-{label}-lr{c['lr']:.4g}-seed{c['seed']}"


# -- the planner ----------------------------------------------------------------------------------
class Planner:
    """What the Searcher knows and decides, without Ray: the trials it proposed (by Tune trial
    id) with their rung values and ends, and the next trial to propose."""

    def __init__(self, spec: SweepSpec) -> None:
        self.spec = spec
        self.settings = spec.settings()
        self.trials: dict[str, dict[str, Any]] = {}
        self.count = 0

    # state kept in Tune's experiment checkpoint
    def state(self) -> dict[str, Any]:
        return {"settings": self.settings, "trials": self.trials, "count": self.count}

    def load(self, state: dict[str, Any]) -> None:
        if state.get("settings") != comparable(state.get("settings") or {},
                                               self.settings):  # pragma: no cover - checked before
            raise LrkitError("the stored Ray sweep has other settings")
        self.trials = state["trials"]
        self.count = state["count"]

    def rebuild(self, experiment_state: dict[str, Any]) -> None:
        """The state from Tune's experiment state (``experiment_state-*.json``): each trial's
        config, Tune status and last report (the outcome, with the rung values in its
        ``eval_curve``), for when the Searcher's own checkpoint is unreadable."""
        rung_steps = set(self.spec.strategy().rung_steps)
        self.trials, self.count = {}, 0
        for trial_json, metadata_json in experiment_state["trial_data"]:
            trial, metadata = json.loads(trial_json), json.loads(metadata_json)
            config = trial.get("config") or {}
            if "number" not in config:
                continue
            result = metadata.get("last_result") or {}
            status = {"TERMINATED": result.get(STATUS), "ERROR": FAILED}.get(
                trial.get("status"), RUNNING)  # PENDING, RUNNING, PAUSED: Tune runs it again
            if status not in (FINISHED, PRUNED, DIVERGED, FAILED, RUNNING):
                status = FAILED  # ended without lrkit's last report, as complete() counts it
            outcome = json.loads(result[OUTCOME]) if result.get(OUTCOME) else {}
            rungs: dict[int, float] = {}
            for step, value in outcome.get("eval_curve") or []:
                if int(step) in rung_steps:
                    rungs.setdefault(int(step), float(value))  # the reported value, not the final
            if STEP in result:
                rungs.setdefault(int(result[STEP]), float(result[VALUE]))
            objective = result.get("lrkit_objective")
            number = int(config["number"])
            self.trials[trial["trial_id"]] = {
                "point": [int(config["group"]), int(config["index"]), int(config["seed"])],
                "status": status, "rungs": rungs, "order": int(config.get("order") or 0),
                "value": float(objective) if status == FINISHED and objective is not None
                else None, "number": number}
            self.count = max(self.count, number)

    def observations(self) -> list[Observation]:
        best: dict[Point, Observation] = {}
        for entry in self.trials.values():
            point = Point(*entry["point"])
            obs = Observation(point, entry["status"], value=entry.get("value"),
                              rungs=dict(entry["rungs"]), order=entry["order"])
            current = best.get(point)
            if current is None or _STATUS_RANK[obs.status] < _STATUS_RANK[current.status]:
                best[point] = obs
        return list(best.values())

    def propose(self, trial_id: str) -> dict[str, Any] | None | str:
        """The config of the next trial, None while the plan waits, ``"finished"`` when done."""
        observations = self.observations()
        plan = self.spec.strategy().plan(observations)
        if plan.done:
            return "finished"
        known = {o.point: o for o in observations}

        def reference(proposal):
            if proposal.ref is None:
                return []
            o = known.get(Point(proposal.point.group, proposal.ref, 0))
            return sorted(o.rungs.items()) if o is not None and o.done else None

        candidates = [(p, reference(p)) for p in plan.proposals]
        if not candidates:  # idle: a trial the plan will likely need, if it can be pruned alike
            candidates = [(p, r) for p in plan.speculative
                          for r in [reference(p)] if r is not None]
        if not candidates:
            return None
        proposal, rungs = candidates[0]
        point = proposal.point
        self.count += 1
        self.trials[trial_id] = {"point": [point.group, point.index, point.seed],
                                 "status": RUNNING, "value": None, "rungs": {},
                                 "order": proposal.order, "number": self.count}
        spec = self.spec
        return {"lr": float(lr_key(spec.rates.values[point.index])),
                "optimizer": spec.optimizers[point.group].label,
                "seed": point.seed, "group": point.group, "index": point.index,
                "number": self.count, "order": proposal.order, "phase": proposal.phase,
                "ref": proposal.ref, "ref_rungs": [[int(s), float(v)] for s, v in rungs or []]}

    def _entry(self, trial_id: str, result: dict[str, Any] | None) -> dict[str, Any] | None:
        entry = self.trials.get(trial_id)
        if entry is None and result and "lrkit_group" in result:  # not proposed by this planner
            entry = self.trials[trial_id] = {
                "point": [result["lrkit_group"], result["lrkit_index"], result["lrkit_seed"]],
                "status": RUNNING, "value": None, "rungs": {}, "order": 0,
                "number": result.get("lrkit_number", 0)}
        return entry

    def result(self, trial_id: str, result: dict[str, Any]) -> None:
        entry = self._entry(trial_id, result)
        if entry is not None and STEP in result:
            entry["rungs"][int(result[STEP])] = float(result[VALUE])

    def complete(self, trial_id: str, result: dict[str, Any] | None, error: bool) -> None:
        entry = self._entry(trial_id, result)
        if entry is None:
            return
        status = (result or {}).get(STATUS)
        if error or status not in (FINISHED, PRUNED, DIVERGED):
            entry["status"] = FAILED
            return
        entry["status"] = status
        objective = result.get("lrkit_objective")
        entry["value"] = float(objective) if status == FINISHED and objective is not None else None


_CLASSES: dict[str, type] = {}


def _searcher_class() -> type:
    """:class:`LrkitSearcher`, made on first use (its base class is Ray's)."""
    if "LrkitSearcher" not in _CLASSES:
        from ray.tune.search import Searcher

        class LrkitSearcher(Searcher):
            """A Tune Searcher that plans with lrkit's strategy (see the module docstring)."""

            def __init__(self, spec: SweepSpec) -> None:
                super().__init__()
                self.planner = Planner(spec)

            def suggest(self, trial_id: str):
                config = self.planner.propose(trial_id)
                return Searcher.FINISHED if config == "finished" else config

            def on_trial_result(self, trial_id: str, result: dict) -> None:
                self.planner.result(trial_id, result)

            def on_trial_complete(self, trial_id: str, result: dict | None = None,
                                  error: bool = False) -> None:
                self.planner.complete(trial_id, result, error)

            def save(self, checkpoint_path: str) -> None:
                # Tune's Searcher.save_to_dir gives a temporary path and renames it after: the
                # file here is whole; its copy to the storage (Tune's sync) is not atomic
                with open(checkpoint_path, "wb") as f:
                    pickle.dump(self.planner.state(), f)

            def restore(self, checkpoint_path: str) -> None:
                # an exception here makes Tune start the experiment over (TuneController logs
                # "Failed to restore the run state" and goes on): never raise for a bad file
                _restore_planner(self.planner, checkpoint_path)

        LrkitSearcher.__module__ = __name__
        LrkitSearcher.__qualname__ = "LrkitSearcher"
        _CLASSES["LrkitSearcher"] = LrkitSearcher
    return _CLASSES["LrkitSearcher"]


def _session_of(path: str) -> str:
    """The session part of a Tune state file's name: ``2024-05-01_12-00-00`` of
    ``searcher-state-2024-05-01_12-00-00.pkl``."""
    name = os.path.basename(path)
    for prefix in _STATE_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):].rsplit(".", 1)[0]
    return ""


def _restore_planner(planner: Planner, checkpoint_path: str) -> None:
    """The Searcher's state from its checkpoint, or, when that file is unreadable (cut short by
    a kill while Tune copied it to the storage) or from another session than Tune's newest
    experiment state beside it, rebuilt from that experiment state (what Tune restores its
    trials from)."""
    folder = os.path.dirname(checkpoint_path)
    found = sorted(f for f in os.listdir(folder)
                   if f.startswith("experiment_state-") and f.endswith(".json"))
    experiment = os.path.join(folder, found[-1]) if found else None
    try:
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        problem = None if isinstance(state, dict) and "trials" in state else "not a planner state"
    except Exception as exc:  # noqa: BLE001 - EOFError, UnpicklingError, ... : a torn file
        state, problem = None, f"{type(exc).__name__}: {exc}"
    if problem is None and (experiment is None
                            or _session_of(experiment) == _session_of(checkpoint_path)):
        planner.load(state)
        if experiment is not None:
            # a kill between a proposal and the Searcher's next save left the checkpoint
            # behind Tune's state: the trial Tune runs again was unknown to it, and the next
            # proposal took its number (two trials numbered 4). The trials only Tune holds are
            # added, the checkpoint's own entries (with what they reported since) kept
            known, count = dict(planner.trials), planner.count
            try:
                with open(experiment, "rb") as f:
                    planner.rebuild(json.loads(f.read().decode("utf-8")))
            except (OSError, ValueError, KeyError, TypeError):  # being written: as it was
                planner.trials, planner.count = known, count
                return
            rebuilt = planner.trials
            planner.trials = {**rebuilt, **known}
            for trial_id, entry in rebuilt.items():
                # Tune copies its files to the storage one by one, experiment_state before
                # searcher-state: a kill between the two left this checkpoint older than
                # Tune's state, with a trial Tune holds as ended still running here. Tune
                # restores it ended and never reports it again, so the plan waited for it for
                # ever (the resumed sweep hung): Tune's end is taken
                if entry["status"] != RUNNING and known.get(trial_id, {}).get("status") == RUNNING:
                    planner.trials[trial_id] = entry
            planner.count = max(count, planner.count)
        return
    if experiment is None:  # pragma: no cover - _check_resumable refuses this before Tune
        logger.error("lrkit: no experiment state beside %s (%s)", checkpoint_path, problem)
        return
    with open(experiment, "rb") as f:
        planner.rebuild(json.loads(f.read().decode("utf-8")))
    logger.warning("lrkit: the Searcher's state %s %s; rebuilt from %s (%d trials)",
                   os.path.basename(checkpoint_path),
                   f"is unreadable ({problem})" if problem else "is of another session",
                   os.path.basename(experiment), len(planner.trials))


def __getattr__(name: str) -> Any:  # so that pickle finds LrkitSearcher by name
    if name == "LrkitSearcher":
        return _searcher_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- running --------------------------------------------------------------------------------------
def _check_reachable(address: str, where: str, advice: str, timeout: float = 5.0) -> None:
    """Refuse at once an address ``host:port`` (or ``ray://host:port``) where nothing listens:
    ``ray.init`` retries such an address for minutes (measured: over 200 s for 127.0.0.1:1)."""
    import socket

    text = address.strip()
    scheme, _, rest = text.rpartition("://")
    if scheme and scheme != "ray":
        return
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit():
        return  # 'auto', 'local' or a form Ray parses itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise LrkitError(f"could not reach {where}: nothing answers at {host}:{port} "
                         f"({reason}). {advice}") from None


@contextlib.contextmanager
def _ray_session(ray, address: str | None) -> Iterator[bool]:
    """Ray as the caller has it (already initialised), else started or joined for the sweep
    (``address``: a cluster's address, ``"auto"``, or None for Ray's default) and shut down
    after it. Yields whether it started a new local Ray (no other node can join it)."""
    if ray.is_initialized():
        require(address is None, f"ray_address={address!r}, but Ray is already initialised in "
                "this process: the sweep runs there. Omit ray_address, or call ray.shutdown() "
                "first")
        yield False
        return
    from_env = address is None and bool(os.environ.get("RAY_ADDRESS", "").strip())
    target = os.environ["RAY_ADDRESS"].strip() if from_env else address
    where = (f"the Ray cluster at RAY_ADDRESS={target!r}" if from_env else
             f"the Ray cluster at {target!r}" if target else "Ray")
    advice = ("Check RAY_ADDRESS (unset it for a local Ray)" if from_env else
              "Check ray_address (for a cluster: the head node's address, or 'auto' on one of "
              "its nodes)")
    if target:
        _check_reachable(target, where, advice)
    try:
        ray.init(address=address)
    except Exception as exc:
        text = " ".join(str(exc).split()).rstrip(".")
        raise LrkitError(f"could not start or reach {where}: {type(exc).__name__}: {text}. "
                         f"{advice}") from None
    try:
        yield not target and _started_here(ray)
    finally:
        ray.shutdown()


def _started_here(ray) -> bool:
    """Whether ``ray.init`` started a new Ray (this process's node is its head) rather than
    joining a running one, which an autoscaler may grow."""
    try:
        return bool(ray._private.worker._global_node.is_head())
    except Exception:  # noqa: BLE001 - Ray's internals moved: assume a cluster that may grow
        return False


@contextlib.contextmanager
def _tune_environment(quiet: bool) -> Iterator[None]:
    """Tune writes its experiment state at every step (so that a killed sweep resumes without
    rerunning finished trials) and prints to stderr, never to stdout (which ``--json`` owns);
    ``quiet``: no progress table and no INFO lines (as the Optuna engine without its bar)."""
    wanted = {"TUNE_GLOBAL_CHECKPOINT_S": "0"}
    if quiet:
        wanted["RAY_AIR_NEW_OUTPUT"] = "0"  # the legacy reporter, which verbose=0 silences
    saved = {k: os.environ.get(k) for k in wanted}
    for key, value in wanted.items():
        if saved[key] is None:  # the user's own setting wins
            os.environ[key] = value
    tune_logger = logging.getLogger("ray.tune")
    level = tune_logger.level
    if quiet:
        tune_logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        tune_logger.setLevel(level)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)


def run(spec: SweepSpec, study_name: str, location: str, *, ray_address: str | None = None,
        workers: int | None = None, threads: int = 1, max_retries: int = 3,
        progress: bool | None = None, band_tolerance: float = 0.02,
        diagnose: bool = True) -> SweepResult:
    """Run (or resume) the sweep as the Tune experiment ``<location>/<study_name>`` and return
    its :class:`SweepResult`."""
    ray, tune = require_ray()
    spec = portable(spec)
    settings = spec.settings()
    marker = {"lrkit_settings": settings, "workers": workers, "threads": threads,
              "max_retries": max_retries}
    where = describe(location, study_name)
    from lrkit.show.progress import show_progress

    progress = show_progress(progress)
    if location == os.path.abspath(DEFAULT_STORAGE):
        os.makedirs(location, exist_ok=True)
    # a stored sweep with other settings is refused before Ray starts (seconds, and its logs)
    path = f"{location.rstrip('/')}/{study_name}"
    stored = _read_marker(location, study_name)
    if stored is None:
        if tune.Tuner.can_restore(path):
            raise LrkitError(f"{where} was not made by lrkit sweep; give another study_name "
                             "or storage")
        restorable, set_aside = False, []
    else:
        _check_stored(stored, marker, where)
        restorable, set_aside = _check_resumable(location, study_name, where)
    with _ray_session(ray, ray_address) as local, _tune_environment(quiet=not progress):
        if local:  # no node with more CPUs can come: a trial that asks for more never starts
            cpus = int(ray.cluster_resources().get("CPU", 0))
            require(threads <= cpus, f"threads={threads}: each trial reserves {threads} CPUs, "
                    f"but the local Ray started for this sweep has {cpus}; give threads <= "
                    f"{cpus}, or run on a cluster with ray_address")
        trainable = tune.with_resources(tune.with_parameters(train, spec=spec, threads=threads,
                                                             cwd=os.getcwd()),
                                        {"cpu": threads})
        if set_aside:
            _drop_staged(study_name, set_aside)
        if restorable:
            tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True,
                                       resume_errored=False, restart_errored=False)
            _set_verbosity(tuner, 1 if progress else 0)
        else:
            if workers is None:  # as many trials at once as the cluster has CPUs for
                cpus = ray.cluster_resources().get("CPU", 1)
                workers = max(1, int(cpus // threads))
            _write_marker(location, study_name, dict(marker, workers=workers))
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(search_alg=_searcher_class()(spec), num_samples=-1,
                                            max_concurrent_trials=workers, reuse_actors=True,
                                            trial_name_creator=trial_name,
                                            trial_dirname_creator=trial_name),
                run_config=tune.RunConfig(
                    name=study_name, storage_path=location, verbose=1 if progress else 0,
                    failure_config=tune.FailureConfig(max_failures=max_retries)))
        grid = tuner.fit()
    result = collect(grid, settings, study_name=study_name, storage=where,
                     strategy=spec.strategy().describe(), band_tolerance=band_tolerance,
                     diagnose=diagnose)
    _check_complete(spec, result, where)
    result.complete = True  # (else _check_complete raised: the call is run again to resume)
    return result


def _set_verbosity(tuner, verbose: int) -> None:
    """A restored Tuner's progress output as this call asks (``progress``): Tune restores the
    RunConfig the experiment started with, so a sweep started with its status table printed it
    again under ``progress=False`` (``--no-progress``), and one started quiet stayed quiet."""
    with contextlib.suppress(Exception):  # Ray Client, or Ray's internals moved: as restored
        tuner._local_tuner.get_run_config().verbose = verbose


def _check_stored(stored: dict[str, Any], marker: dict[str, Any], where: str) -> None:
    """Refuse to resume a Ray sweep with other settings, or with another number of workers or
    threads (a restored Tune experiment keeps those it started with)."""
    old = stored.get("lrkit_settings") or {}
    differences = setting_differences(old, comparable(old, marker["lrkit_settings"]))
    if differences:
        edited = (" The recipe's source changed since then (the file, or a module beside it "
                  "that it imports), so its stored trials trained the earlier version." if any(
                      old.get(key) not in (None, marker["lrkit_settings"].get(key))
                      for key in ("problem_source", "problem_imports")) else "")
        raise LrkitError(f"{where} was started with other settings ({'; '.join(differences)})."
                         f"{edited} A Ray sweep resumes only with its own settings: give another "
                         "study_name or storage")
    for key in ("workers", "threads", "max_retries"):
        was, now = stored.get(key), marker[key]
        if key == "workers" and (now is None or was is None):
            continue  # not given: the workers it started with (the marker holds the number)
        if was != now:
            also = f" or without {key}" if key == "workers" else ""
            raise LrkitError(f"{where} was started with {key}={was!r}, now {key}={now!r}: a "
                             f"resumed Ray Tune experiment keeps the {key} it started with; "
                             f"resume it with {key}={was!r}{also}, or give another study_name")


def _check_complete(spec: SweepSpec, result: SweepResult, where: str) -> None:
    """A fit that returned before the plan was done was interrupted (Ctrl-C): say how to resume;
    a sweep whose every trial failed names the error."""
    observations = []
    for r in result.completed():
        if r.status in (FINISHED, PRUNED, DIVERGED, FAILED):
            point = Point(result.optimizers.index(r.optimizer),
                          spec.rates.index_of()[lr_key(r.lr)], r.seed)
            observations.append(Observation(point, r.status, value=r.loss))
    if not spec.strategy().plan(observations).done:
        raise LrkitError(f"the sweep stopped before its plan was done ({where}); run the same "
                         "call again to resume it (finished trials are kept)")
    if result.records and all(r.status == FAILED for r in result.records):
        raise LrkitError(f"every trial of the sweep failed, the first with: "
                         f"{result.records[0].error}; fix the recipe and run again with another "
                         "study_name (failed trials of this one are not retried)")


def _trial_config(grid, item) -> dict[str, Any]:
    """The config of a trial whose Result has none: a trial that failed before its first report,
    restored from the stored experiment (Tune takes a Result's config from the last report, and a
    restored trial's last report is empty), so it would drop out of the sweep. From Tune's
    restored trials, else the trial's params.json."""
    analysis = getattr(grid, "_experiment_analysis", None)
    for trial in getattr(analysis, "trials", None) or []:
        if getattr(trial, "path", None) == item.path and isinstance(trial.config, dict):
            return trial.config
    with contextlib.suppress(Exception):  # a torn or missing params.json: no record, as before
        with item.filesystem.open_input_stream(f"{item.path}/params.json") as stream:
            return json.loads(stream.read().decode("utf-8"))
    return {}


def _error_text(error: Any) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def collect(grid, settings: dict[str, Any], *, study_name: str = "", storage: str = "",
            strategy: str = "", band_tolerance: float = 0.02, diagnose: bool = True
            ) -> SweepResult:
    """The :class:`SweepResult` of a Tune ``ResultGrid`` of this engine's trials (the fields
    the Optuna engine's :func:`lrkit.sweep.api.collect` fills, from the trials' last reports)."""
    labels = settings.get("optimizer_labels", settings["optimizers"])
    records = []
    for item in grid:
        config, metrics = item.config or {}, item.metrics or {}
        if "number" not in config:
            config = _trial_config(grid, item)
        if "number" not in config:
            continue
        status = metrics.get(STATUS)
        outcome = json.loads(metrics[OUTCOME]) if status and OUTCOME in metrics else {}
        error = None
        if item.error is not None:
            status, error = FAILED, _error_text(item.error)
        elif status not in (FINISHED, PRUNED, DIVERGED):
            status = RUNNING
        objective = metrics.get("lrkit_objective")
        records.append(TrialRecord(
            number=int(config["number"]), optimizer=labels[int(config["group"])],
            lr=float(config["lr"]), seed=int(config["seed"]), status=status,
            loss=float(objective) if status == FINISHED and objective is not None else None,
            val_loss=outcome.get("val_loss"), train_loss=outcome.get("train_loss"),
            metric=outcome.get("metric"), metric_name=outcome.get("metric_name"),
            steps=int(outcome.get("steps") or metrics.get(STEP) or 0),
            seconds=outcome.get("seconds"), phase=config.get("phase"),
            diverged_step=outcome.get("diverged_step"), error=error,
            curve=outcome.get("curve") or [], eval_curve=outcome.get("eval_curve") or [],
            diagnosis_detail=outcome.get("diagnosis")))
    return SweepResult(records, settings=settings, study_name=study_name, storage=storage,
                       strategy=strategy, band_tolerance=band_tolerance, diagnose=diagnose)
