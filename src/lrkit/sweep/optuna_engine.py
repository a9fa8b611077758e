"""Glue between the sweep (strategy + trial runner) and Optuna: study, storage, pruner, workers.

* **Storage.** A path is an Optuna journal file (``JournalStorage`` over ``JournalFileBackend``,
  no server); a URL (``postgresql://...``, ``sqlite:///...``) is an ``RDBStorage``. Either is a
  normal Optuna study that ``optuna-dashboard`` and ``optuna.load_study`` read.
* **Planning.** Each worker, under a planning lock shared by all workers of the study (a file lock
  beside the journal, a PostgreSQL advisory lock, or a file lock beside a SQLite file), reads the
  study, asks the strategy what to run and claims one trial (``enqueue_trial`` + ``ask``), so no
  planned trial is run twice. Trials are run outside the lock.
* **Crash recovery.** On RDB storage Optuna's heartbeat marks the trials of a dead worker failed
  after the grace period and ``RetryHeartbeatStaleTrialCallback`` (``RetryFailedTrialCallback`` in
  older Optuna) queues a retry. Optuna's journal storage has no heartbeat, so lrkit adds the
  equivalent: every worker holds an exclusive ``flock`` on its own file in ``<journal>.workers/``
  for its lifetime and records its id on each trial it claims; the kernel drops the lock when the
  process dies (``kill -9`` included), so a running trial whose worker's lock is free is stale:
  it is marked failed and retried with the same Optuna callback, at once, with no grace period.
* **Pruning.** :class:`LrkitPruner` is an Optuna pruner that asks the strategy (successive
  halving among trials of the same optimizer).
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import json
import logging
import math
import os
import re
import threading
import time
import uuid
import warnings
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator, NoReturn

from lrkit.errors import LrkitError
from lrkit.sweep.config import SweepSpec, another_recipe, comparable, setting_differences
from lrkit.sweep.strategy import (DIVERGED, FAILED, FINISHED, PRUNED, RUNNING, WAITING,
                                  Observation, Point)
from lrkit.sweep.trial import run_trial

SETTINGS_ATTR = "lrkit_settings"
#: the max_retries of the study's last run (a run option, not a setting: a rerun may change it),
#: which tells a sweep read back whether a failed point is still to be retried
MAX_RETRIES_ATTR = "lrkit_max_retries"
WORKER_ATTR = "lrkit_worker"
#: a trial attribute: the attempt was stopped by Ctrl-C, SIGTERM or SIGHUP (no failure of
#: its rate)
INTERRUPTED_ATTR = "interrupted"
DEFAULT_STORAGE = os.path.join(".lrkit", "sweeps.journal")
HEARTBEAT_INTERVAL = 5
HEARTBEAT_GRACE = 20
#: times a database storage is opened again after losing the race to create Optuna's tables
SCHEMA_RACE_RETRIES = 3


def require_optuna():
    try:
        import optuna
    except ImportError:
        raise LrkitError("lrkit sweep needs Optuna: pip install 'lrkit[sweep]' "
                         "(and 'lrkit[postgres]' for PostgreSQL storage)") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _quiet_optuna_warnings() -> None:
    """Silence Optuna's "experimental feature" warnings (heartbeat, retry callback), which lrkit
    uses on purpose; other warnings are left alone."""
    try:
        from optuna.exceptions import ExperimentalWarning
    except ImportError:  # pragma: no cover
        return
    warnings.filterwarnings("ignore", category=ExperimentalWarning)


def _schema_race(exc: BaseException) -> bool:
    """Whether opening a database storage failed because another process created the same
    table or type at the same moment (PostgreSQL: a duplicate key in pg_type, "already
    exists")."""
    text = str(exc)
    return (type(exc).__name__ in ("IntegrityError", "ProgrammingError")
            and ("duplicate key value" in text or "already exists" in text))


def _retry_callback(max_retry: int):
    from optuna import storages

    cls = (getattr(storages, "RetryHeartbeatStaleTrialCallback", None)
           or storages.RetryFailedTrialCallback)  # the name before Optuna 4.9
    return cls(max_retry=max_retry)


def mask_url(url: str) -> str:
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


#: database URL schemes (before any ``+driver``): a storage that starts with one is a URL
DB_SCHEMES = ("postgresql", "postgres", "sqlite", "mysql", "mariadb", "oracle", "mssql")


def _refuse_broken_url(location: str) -> None:
    """A database URL without its ``//`` (``postgresql:/u:p@host/db``) would be taken for a
    journal file path, refused for a missing directory with the password printed: say what it
    is instead, password masked."""
    found = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):(?!//)(.*)", location, re.S)
    if found is None:
        return
    scheme, rest = found.groups()
    if scheme.split("+", 1)[0].lower() in DB_SCHEMES or (len(scheme) > 1 and rest[:1] == "/"):
        shown = re.sub(r"([^:/@]+:)[^:/@]*@", r"\1***@", rest)
        raise LrkitError(f"storage '{scheme}:{shown}' looks like a database URL without the "
                         f"'//' after '{scheme}:'; write {scheme}://... (sqlite:///FILE for a "
                         "SQLite file), or give a journal file path")


# -- locks ---------------------------------------------------------------------------------------
class FileLock:
    """An exclusive ``flock`` on a file: released by the kernel when the process dies."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, blocking: bool = True) -> bool:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        import fcntl

        if self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class _NullLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


class PostgresAdvisoryLock:
    """A session-level ``pg_advisory_lock`` on one connection; freed if the worker dies."""

    def __init__(self, url: str, name: str) -> None:
        import sqlalchemy

        self._engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool,
                                                connect_args={"connect_timeout": 10})
        self._conn = None
        self._key = zlib.crc32(f"lrkit-sweep:{name}".encode()) - 2 ** 31
        self._text = sqlalchemy.text

    def __enter__(self):
        if self._conn is None:
            self._conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        self._conn.execute(self._text("SELECT pg_advisory_lock(:k)"), {"k": self._key})
        return self

    def __exit__(self, *exc) -> None:
        self._conn.execute(self._text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._engine.dispose()


# -- storage -------------------------------------------------------------------------------------
class StorageHandle:
    """Where a sweep lives: a journal file path or a database URL. Picklable, so that worker
    processes open their own connection."""

    def __init__(self, location: str | None, *, heartbeat_interval: int = HEARTBEAT_INTERVAL,
                 grace_period: int = HEARTBEAT_GRACE, max_retries: int = 3) -> None:
        if location is not None and not isinstance(location, (str, os.PathLike)):
            # storage=123 made a journal file named "123" in the working directory
            raise LrkitError(f"storage must be a journal file path or a database URL (a str), "
                             f"got {type(location).__name__} {location!r}")
        if location is not None and not str(location).strip():
            # an empty --storage is a slip, not a wish for the default journal in the cwd
            raise LrkitError(f"storage must be a journal file path or a database URL, got "
                             f"{location!r}; omit it for the default {DEFAULT_STORAGE}")
        location = DEFAULT_STORAGE if location is None else str(location)
        _refuse_broken_url(location)
        self.is_url = "://" in location
        self.location = location if self.is_url else os.path.abspath(location)
        #: the default journal's directory (``.lrkit``) is lrkit's own and is created; the
        #: directory of a journal or SQLite file the user names must exist, as for every output
        #: file of the CLI (a typo is not silently turned into new directories)
        self.is_default = not self.is_url and self.location == os.path.abspath(DEFAULT_STORAGE)
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.max_retries = max_retries

    @property
    def kind(self) -> str:
        return "rdb" if self.is_url else "journal"

    @property
    def dialect(self) -> str:
        if not self.is_url:
            return "journal"
        dialect = self.location.split("://", 1)[0].split("+", 1)[0].lower()
        return "postgresql" if dialect == "postgres" else dialect

    def describe(self) -> str:
        return mask_url(self.location) if self.is_url else self.location

    @property
    def sqlite_file(self) -> str | None:
        """The database file of a ``sqlite:///FILE`` URL (relative, or absolute with four
        slashes); None for other storage and for an in-memory or ``file:`` URI database."""
        if self.dialect != "sqlite":
            return None
        rest = self.location.split("://", 1)[1]
        if not rest.startswith("/"):
            return None  # sqlite:// is an in-memory database
        db = rest[1:].split("?", 1)[0]
        if db in ("", ":memory:") or db.startswith("file:"):
            return None
        return db

    @property
    def url(self) -> str:
        """The URL with an installed driver: a bare ``postgresql://`` means psycopg (3) to
        SQLAlchemy 2.1 but psycopg2 to 2.0; use whichever is installed."""
        import importlib.util

        scheme, sep, rest = self.location.partition("://")
        if scheme.lower() in ("postgresql", "postgres") and "+" not in scheme:
            if importlib.util.find_spec("psycopg") is not None:
                return f"postgresql+psycopg://{rest}"
            if importlib.util.find_spec("psycopg2") is not None:
                return f"postgresql+psycopg2://{rest}"
        return self.location

    def open(self):
        """The Optuna storage object; a clear :class:`LrkitError` if it cannot be reached."""
        optuna = require_optuna()
        _quiet_optuna_warnings()
        if not self.is_url:
            return self._open_journal(optuna)
        return self._open_rdb(optuna)

    def _open_journal(self, optuna):
        path = Path(self.location)
        if path.is_dir():
            raise LrkitError(f"storage {self.location!r} is a directory; give a journal file "
                             "path such as sweeps.journal, or a database URL")
        if not self.is_default and not path.parent.is_dir():
            what = "does not exist" if not path.parent.exists() else "is not a directory"
            raise LrkitError(f"cannot use journal file {self.location!r}: the directory "
                             f"{str(path.parent)!r} {what}; create it first or pick another "
                             f"path (only the default {DEFAULT_STORAGE} is created)")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not _looks_like_journal(str(path)):
                # checked before anything is written: a SQLite database given as a plain path
                # lost its last bytes to the torn-line repair, and got a lock file beside it
                raise LrkitError(
                    f"{self.location!r} is not an Optuna journal file (its first line is not a "
                    "journal record), and it is left as it is; for a database give its URL "
                    "(sqlite:///FILE), else a new journal file path")
            _repair_journal(str(path))
        except OSError as exc:
            raise LrkitError(f"cannot use journal file {self.location!r} (storage, --storage): "
                             f"{exc.strerror or exc}; give a path in a writable directory"
                             ) from None
        from optuna.storages import JournalStorage

        try:
            from optuna.storages.journal import JournalFileBackend
        except ImportError:  # Optuna < 4.0
            from optuna.storages import JournalFileStorage as JournalFileBackend
        try:
            backend = _mending(JournalFileBackend)(str(path),
                                                   lock_obj=FileLock(str(path) + ".flock"))
            return JournalStorage(backend)
        except (ValueError, json.JSONDecodeError) as exc:
            raise LrkitError(f"{self.location!r} is not an Optuna journal file ({exc})") from None
        except OSError as exc:  # a read-only directory or file: the backend creates the file
            raise LrkitError(f"cannot write the sweep's journal file {self.location!r} "
                             f"(storage, --storage): {exc.strerror or exc}; give a path in a "
                             "writable directory") from None

    def _open_rdb(self, optuna):
        dialect = self.dialect
        engine_kwargs: dict[str, Any] = {}
        if dialect in ("postgresql", "postgres"):
            import importlib.util

            if (importlib.util.find_spec("psycopg2") is None
                    and importlib.util.find_spec("psycopg") is None):
                raise LrkitError("PostgreSQL storage needs a driver: pip install "
                                 "'lrkit[postgres]' (psycopg2)")
            engine_kwargs["connect_args"] = {"connect_timeout": 10}
        db = self.sqlite_file
        if db is not None and not Path(db).parent.is_dir():
            raise LrkitError(f"cannot reach storage {self.describe()}: directory "
                             f"{str(Path(db).parent)!r} does not exist; create it first or "
                             "pick another path")
        retry = _retry_callback(self.max_retries)
        options: dict[str, Any] = dict(heartbeat_interval=self.heartbeat_interval,
                                       grace_period=self.grace_period)
        import inspect

        params = inspect.signature(optuna.storages.RDBStorage).parameters
        options["heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in params
                else "failed_trial_callback"] = retry
        for attempt in range(SCHEMA_RACE_RETRIES + 1):
            try:
                return optuna.storages.RDBStorage(self.url, engine_kwargs=engine_kwargs,
                                                  **options)
            except Exception as exc:
                if attempt < SCHEMA_RACE_RETRIES and _schema_race(exc):
                    # workers started together on a fresh database each create Optuna's tables;
                    # the losers of that race see a duplicate: the tables are there now
                    time.sleep(0.2 * (attempt + 1))
                    continue
                self._refuse(exc)

    def _refuse(self, exc: Exception) -> NoReturn:
        """The database storage could not be opened: why, in one line (a missing driver, an
        unknown scheme; sqlalchemy's errors: refused, unknown host, bad credentials)."""
        if isinstance(exc, ImportError):
            raise LrkitError(f"storage {self.describe()} needs a database driver: {exc}") from None
        if type(exc).__name__ == "NoSuchModuleError":  # an unknown scheme (a typo?)
            import difflib

            scheme = self.location.split("://", 1)[0]
            names = [s for s in DB_SCHEMES if s != "postgres"]  # postgresql's alias
            close = difflib.get_close_matches(scheme.split("+", 1)[0].lower(), names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise LrkitError(f"storage {self.describe()}: unknown database scheme "
                             f"{scheme!r}; {hint}use postgresql://user:pass@host/db or "
                             "sqlite:///FILE, or a journal file path") from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LrkitError(f"cannot reach storage {self.describe()}: {first}") from None

    def planning_lock(self, study_name: str):
        if not self.is_url:
            return FileLock(self.location + ".plan.lock")
        if self.dialect in ("postgresql", "postgres"):
            return PostgresAdvisoryLock(self.url, study_name)
        if self.sqlite_file is not None:
            return FileLock(os.path.abspath(self.sqlite_file) + ".plan.lock")
        warnings.warn(f"no cross-process lock for {self.dialect} storage: two workers may "
                      "rarely run the same trial; use PostgreSQL or a journal file", stacklevel=2)
        return _NullLock()

    def liveness(self) -> "Liveness":
        if self.is_url:
            return HeartbeatLiveness()
        return JournalLiveness(self.location + ".workers")


def _looks_like_journal(path: str) -> bool:
    """Whether ``path`` is missing, empty or starts as an Optuna journal does: a JSON record
    with an ``op_code`` (a first record cut short by ``kill -9`` counts, when it begins so)."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return True
    with open(path, "rb") as f:
        first = f.readline(1 << 20)
    if not first.endswith(b"\n"):  # the only line, cut short: a torn first record, or another file
        return first.lstrip().startswith(b'{"op_code"')
    try:
        record = json.loads(first)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(record, dict) and "op_code" in record


def _mending(backend_class: type) -> type:
    """Optuna's journal file backend, whose every append first cuts a torn last line (a writer
    killed mid-write by ``kill -9`` or the OOM killer): appended after it, the next record made a
    line no reader can parse in the middle of the file, the running sweep crashed, and every
    later run refused the journal. (:func:`_repair_journal` mends it when a sweep opens it; this
    covers the sweeps already running on it.)"""

    class MendingJournalFileBackend(backend_class):
        def __init__(self, file_path: str, lock_obj: FileLock) -> None:
            super().__init__(file_path, lock_obj=lock_obj)
            self._mend_path, self._mend_lock = file_path, lock_obj

        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            text = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs)
            with self._mend_lock, open(self._mend_path, "ab+") as f:
                size = f.seek(0, os.SEEK_END)
                if size:
                    f.seek(size - 1)
                    if f.read(1) != b"\n":
                        f.seek(0)
                        f.truncate(f.read().rfind(b"\n") + 1)
                f.write(text.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())

    return MendingJournalFileBackend


def _repair_journal(path: str) -> None:
    """Drop a torn last line (a write cut by ``kill -9``) so that the journal stays readable.
    Only called on a file that :func:`_looks_like_journal`."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        with FileLock(path + ".flock"):
            data = f.seek(0) or f.read()
            cut = data.rfind(b"\n") + 1
            f.truncate(cut)


# -- liveness of running trials ------------------------------------------------------------------
class Liveness:
    token: str = ""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def recover(self, study, spec: SweepSpec) -> list[int]:
        return []

    def claimed(self, study, trial) -> None:
        pass

    def heartbeat(self, study, trial):
        return contextlib.nullcontext()


class HeartbeatLiveness(Liveness):
    """RDB storage: Optuna's heartbeat (this class runs the beat thread for ask/tell trials)."""

    def __init__(self) -> None:
        self.token = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def recover(self, study, spec: SweepSpec) -> list[int]:
        from optuna.storages import fail_stale_trials

        before = {t.number for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING"}
        fail_stale_trials(study)
        after = {t.number for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING"}
        return sorted(before - after)

    def claimed(self, study, trial) -> None:
        storage = study._storage
        if getattr(storage, "get_heartbeat_interval", lambda: None)():
            storage.record_heartbeat(trial._trial_id)

    @contextlib.contextmanager
    def heartbeat(self, study, trial) -> Iterator[None]:
        storage = study._storage
        interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
        if not interval:
            yield
            return
        stop = threading.Event()
        trial_id = trial._trial_id

        def beat() -> None:
            while True:
                with contextlib.suppress(Exception):
                    storage.record_heartbeat(trial_id)
                if stop.wait(interval):
                    return

        thread = threading.Thread(target=beat, daemon=True, name="lrkit-heartbeat")
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


class JournalLiveness(Liveness):
    """Journal storage: one ``flock``-ed file per live worker (see the module docstring)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.token = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._lock: FileLock | None = None

    def __enter__(self):
        os.makedirs(self.directory, exist_ok=True)
        self._lock = FileLock(os.path.join(self.directory, self.token))
        self._lock.acquire()
        return self

    def __exit__(self, *exc) -> None:
        if self._lock is not None:
            self._lock.release()
            with contextlib.suppress(OSError):
                os.remove(self._lock.path)
            self._lock = None

    def alive(self, token: str) -> bool:
        if token == self.token:
            return True
        probe = FileLock(os.path.join(self.directory, os.path.basename(token)))
        if probe.acquire(blocking=False):
            probe.release()
            with contextlib.suppress(OSError):
                os.remove(probe.path)
            return False
        return True

    def recover(self, study, spec: SweepSpec) -> list[int]:
        """Fail and retry the running trials whose worker is gone. Called under the planning
        lock, so every live worker has already recorded its id on the trial it claimed."""
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        recovered = []
        retry = _retry_callback(spec.max_retries)
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            token = trial.system_attrs.get(WORKER_ATTR)
            if token is not None and self.alive(token):
                continue
            try:
                study.tell(trial.number, state=TrialState.FAIL)
            except (UpdateFinishedTrialError, ValueError, RuntimeError):
                continue
            failed = study.get_trials(deepcopy=True)[trial.number]
            retry(study, failed)
            recovered.append(trial.number)
        return recovered


# -- reading the study ---------------------------------------------------------------------------
_STATUS_RANK = {FINISHED: 0, DIVERGED: 0, PRUNED: 0, RUNNING: 1, WAITING: 2, FAILED: 3}


def trial_status(trial) -> str:
    state = trial.state.name
    if state == "COMPLETE":
        return FINISHED
    if state == "PRUNED":
        return DIVERGED if trial.user_attrs.get("status") == DIVERGED else PRUNED
    return {"RUNNING": RUNNING, "WAITING": WAITING}.get(state, FAILED)


def observe(trials, spec: SweepSpec) -> list[Observation]:
    """One :class:`Observation` per point of ``spec`` among the stored ``trials``.

    A point's finished attempt wins over a running one, which wins over a queued one. A point
    whose only attempts failed is left out (so the strategy plans it again) until it has failed
    ``max_retries + 1`` times; then it counts as failed. Attempts that raised count, and so do
    attempts whose worker died under them (``kill -9``, the kernel's out-of-memory killer, a lost
    node), as a Ray trial's do: a trial that kills its worker each time had been run again on
    every resume, for ever. Attempts stopped by Ctrl-C, SIGTERM or SIGHUP (marked
    ``interrupted``) are retried as often as it takes.
    """
    best: dict[Point, Observation] = {}
    failures: dict[Point, int] = {}
    for trial in trials:
        point = spec.point_of(trial.user_attrs)
        if point is None:
            continue
        status = trial_status(trial)
        if status == FAILED:
            # an attempt stopped by Ctrl-C, SIGTERM or SIGHUP is no failure of its rate (four Ctrl-C
            # during one trial had dropped its rate for good, and the walk went the wrong way);
            # one that raised, or whose worker died under it, is
            if not trial.user_attrs.get(INTERRUPTED_ATTR):
                failures[point] = failures.get(point, 0) + 1
            continue
        obs = Observation(point, status,
                          value=trial.value if status == FINISHED else None,
                          rungs={int(k): float(v) for k, v in trial.intermediate_values.items()},
                          order=int(trial.user_attrs.get("order", 0)))
        current = best.get(point)
        if current is None or _STATUS_RANK[status] < _STATUS_RANK[current.status]:
            best[point] = obs
    for point, count in failures.items():
        if point not in best and count > spec.max_retries:
            best[point] = Observation(point, FAILED, order=10 ** 9)
    return list(best.values())


class LrkitPruner:
    """An Optuna pruner (``optuna.pruners.BasePruner`` interface) that applies the strategy's
    successive halving among the trials of the same optimizer."""

    def __init__(self, spec: SweepSpec) -> None:
        self.spec = spec
        self.strategy = spec.strategy()

    def prune(self, study, trial) -> bool:
        step = trial.last_step
        if step is None:
            return False
        point = self.spec.point_of(trial.user_attrs)
        if point is None:
            return False
        ref = self.spec.ref_of(trial.user_attrs)
        if ref is None:
            return False
        value = trial.intermediate_values[step]
        others = [t for t in study.get_trials(deepcopy=False) if t.number != trial.number]
        return self.strategy.should_prune(point, ref, step, value, observe(others, self.spec))


def _make_pruner(spec: SweepSpec):
    import optuna

    class _Pruner(LrkitPruner, optuna.pruners.BasePruner):
        pass

    return _Pruner(spec)


# -- study ---------------------------------------------------------------------------------------
def open_study(handle: StorageHandle, study_name: str, spec: SweepSpec, *, create: bool,
               continue_study: bool = False):
    """Create or load the study and check that its stored settings match ``spec``'s."""
    optuna = require_optuna()
    storage = handle.open()
    sampler = optuna.samplers.RandomSampler(seed=0)
    pruner = _make_pruner(spec)
    lock = handle.planning_lock(study_name)
    try:
        with lock:
            if create:
                study = optuna.create_study(study_name=study_name, storage=storage,
                                            sampler=sampler, pruner=pruner, direction="minimize",
                                            load_if_exists=True)
                stored = study.user_attrs.get(SETTINGS_ATTR)
                wanted = spec.settings()
                if stored is None:
                    study.set_user_attr(SETTINGS_ATTR, wanted)
                    study.set_user_attr("lrkit_problem", spec.problem_label)
                elif stored == comparable(stored, wanted):
                    if stored != wanted:  # a study from before the source was kept: record it
                        study.set_user_attr(SETTINGS_ATTR, wanted)
                else:
                    if another_recipe(stored, wanted):
                        # no trial of another recipe "matches": its trials trained other models
                        raise LrkitError(_other_problem_message(study_name, handle, stored,
                                                                wanted))
                    if not continue_study:
                        raise LrkitError(_mismatch_message(study_name, handle, stored, wanted))
                    study.set_user_attr(SETTINGS_ATTR, wanted)
                if study.user_attrs.get(MAX_RETRIES_ATTR) != spec.max_retries:
                    study.set_user_attr(MAX_RETRIES_ATTR, spec.max_retries)
            else:
                study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler,
                                          pruner=pruner)
    finally:
        if isinstance(lock, PostgresAdvisoryLock):
            lock.close()
    return study


def _mismatch_message(name: str, handle: StorageHandle, stored: dict, wanted: dict) -> str:
    differences = setting_differences(stored, wanted)
    edited = ("" if all(stored.get(key) in (None, wanted.get(key))
                        for key in ("problem_source", "problem_imports")) else
              " The recipe's source changed since then (the file, or a module beside it that "
              "it imports), so its stored trials trained the earlier version: --continue "
              "reuses them only if the change does not alter training (a comment, a print).")
    return (f"study {name!r} in {handle.describe()} was started with other settings ("
            + "; ".join(differences) + ")." + edited + " Continue it with the new settings "
            "(trials that match are reused) with --continue / continue_study=True, or start "
            "another with --study-name / study_name=")


def _other_problem_message(name: str, handle: StorageHandle, stored: dict,
                           wanted: dict) -> str:
    return (f"study {name!r} in {handle.describe()} holds a sweep of another recipe (stored "
            f"{stored.get('problem')!r}, now {wanted.get('problem')!r}): none of its trials "
            "trained this one's models, so it cannot be continued with it; start another study "
            "with --study-name / study_name= (or another --storage)")


# -- one worker ----------------------------------------------------------------------------------
def _claim(study, spec: SweepSpec, liveness: Liveness, speculate: bool = True,
           since: datetime.datetime | None = None):
    """Under the planning lock: recover stale trials, plan, and claim one trial to run: a queued
    retry first, else the plan's next trial, else (``speculate``, while the plan waits for
    other workers) a trial that the plan is likely to need next.

    Returns ``(trial, plan)``; ``trial`` is None when there is nothing to run right now. A trial
    that raised an error since ``since`` (another worker's, in this run) stops the sweep: this
    worker raises an :class:`LrkitError` naming it, and the next run retries it (here, another
    worker retried it at once, and one run spent two of its ``max_retries + 1`` attempts).
    """
    from optuna.trial import TrialState

    liveness.recover(study, spec)
    trials = study.get_trials(deepcopy=False)
    plan = spec.strategy().plan(observe(trials, spec))
    if plan.done:
        return None, plan
    failed = [t for t in trials if since is not None and t.state == TrialState.FAIL
              and "error" in t.user_attrs and t.datetime_complete is not None
              and t.datetime_complete >= since]
    if failed:
        # not a finished sweep: said as the worker whose trial failed says it, so that no
        # process prints a partial table as the sweep's result (with exit code 0)
        raise LrkitError(
            f"the sweep stopped: trial {failed[0].number}, run by another worker, failed "
            f"({failed[0].user_attrs['error']}); it is recorded as failed; fix the cause and "
            "run the same command again to retry it and finish the sweep")
    waiting = [t for t in trials if t.state == TrialState.WAITING
               and spec.point_of(t.user_attrs) is not None]
    if not waiting:
        candidates = plan.proposals or (plan.speculative if speculate else [])
        if not candidates:
            return None, plan
        proposal = candidates[0]
        study.enqueue_trial(spec.params(proposal.point),
                            user_attrs=spec.trial_attrs(proposal.point, proposal.order,
                                                        proposal.phase, proposal.ref))
    with warnings.catch_warnings():  # lrkit runs the heartbeat of its ask-and-tell trials itself
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        trial = study.ask()
    # still under the lock: a trial is never seen running without its owner's mark (journal) or
    # without a first heartbeat (RDB), so a worker killed right now is still detected
    study._storage.set_trial_system_attr(trial._trial_id, WORKER_ATTR, liveness.token)
    liveness.claimed(study, trial)
    return trial, plan


def _execute(study, trial, spec: SweepSpec, liveness: Liveness) -> dict[str, Any]:
    """Run one claimed trial and tell Optuna how it ended. A Ctrl-C, SIGTERM or SIGHUP in it
    (not only in the training: while the result is recorded too) marks it interrupted, which
    never counts towards max_retries; a trial left running would read as its worker's death."""
    from optuna.trial import TrialState

    try:
        return _run_and_tell(study, trial, spec, liveness)
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM or SIGHUP (the CLI's, a worker process's)
        with contextlib.suppress(Exception):  # (a trial told already refuses both: as it is)
            trial.set_user_attr(INTERRUPTED_ATTR, True)
            study.tell(trial, state=TrialState.FAIL)
        raise


def _run_and_tell(study, trial, spec: SweepSpec, liveness: Liveness) -> dict[str, Any]:
    from optuna.trial import TrialState

    point = spec.point_of(trial.user_attrs)
    if point is None:  # a queued trial of other settings or another tool: not ours to run
        study.tell(trial, state=TrialState.FAIL)
        return {"status": FAILED, "number": trial.number}
    low, high = spec.rates.low, spec.rates.high
    trial.suggest_float("lr", low, high, log=True)
    trial.suggest_int("seed", 0, max(spec.seeds - 1, 0))
    config = spec.trial_config(point)

    def report(step: int, value: float) -> bool:
        trial.report(value, step)
        return trial.should_prune()

    try:
        with liveness.heartbeat(study, trial):
            outcome = run_trial(config, report)
    except Exception as exc:
        with contextlib.suppress(Exception):
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            study.tell(trial, state=TrialState.FAIL)
        opt = spec.optimizers[point.group].label
        raise LrkitError(
            f"trial {trial.number} (optimizer {opt}, lr {config.lr:.4g}, seed {point.seed}) "
            f"failed: {type(exc).__name__}: {exc}. It is recorded as failed; fix the cause and "
            "run the same command again to retry it") from exc
    result = outcome.to_dict()
    status = result.pop("status")
    result = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
              for k, v in result.items()}
    trial.set_user_attr("status", status)
    trial.set_user_attr("result", result)
    if status == FINISHED:
        study.tell(trial, outcome.objective)
    else:
        study.tell(trial, state=TrialState.PRUNED)
    return {"status": status, "number": trial.number, "point": point,
            "objective": outcome.objective, "steps": outcome.steps}


def run_worker(handle: StorageHandle, study_name: str, spec: SweepSpec, *,
               on_trial: Callable[[dict[str, Any]], None] | None = None,
               poll_seconds: float = 0.25, max_trials: int | None = None,
               threads: int | None = 1, speculate: bool = True) -> int:
    """Run trials of the study until the strategy says the sweep is done; returns how many
    trials this worker ran. Several workers (processes, machines) may run this at once."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    study = open_study(handle, study_name, spec, create=False)
    lock = handle.planning_lock(study_name)
    ran = 0
    started = datetime.datetime.now()  # Optuna's own clock for datetime_complete
    try:
        with handle.liveness() as liveness:
            while max_trials is None or ran < max_trials:
                with lock:
                    trial, plan = _claim(study, spec, liveness, speculate, since=started)
                if plan.done:
                    break
                if trial is None:
                    time.sleep(poll_seconds)
                    continue
                info = _execute(study, trial, spec, liveness)
                ran += 1
                if on_trial is not None:
                    on_trial(info)
    finally:
        if isinstance(lock, PostgresAdvisoryLock):
            lock.close()
    return ran


def _worker_process(handle: StorageHandle, study_name: str, spec: SweepSpec, threads: int,
                    parent: int) -> None:
    """Entry point of a ``--workers N`` process: dies with its parent (Linux), runs trials."""
    import signal
    import sys

    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the parent, which stops us

    def stopped(signum, frame):  # the parent's terminate(): the trial is told as interrupted
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stopped)
    if hasattr(signal, "SIGHUP") and signal.getsignal(signal.SIGHUP) != signal.SIG_IGN:
        signal.signal(signal.SIGHUP, stopped)  # a closed terminal's, sent to the whole group
    try:
        run_worker(handle, study_name, spec, threads=threads)
    except LrkitError as exc:
        print(f"lrkit sweep worker: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # its trial told: now die of the signal, as the parent expects
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def _start_method(spec: SweepSpec) -> str:
    """``fork`` on Linux while CUDA is not initialised (children inherit the imports and the
    data already loaded, as DataLoader workers do, and set one torch thread at once); ``spawn``
    elsewhere."""
    import sys

    if not sys.platform.startswith("linux"):
        return "spawn"
    try:
        import torch

        if torch.cuda.is_initialized():
            return "spawn"
    except Exception:  # pragma: no cover
        return "spawn"
    return "fork"


def run_workers(handle: StorageHandle, study_name: str, spec: SweepSpec, workers: int, *,
                threads: int = 1, on_trial: Callable[[dict[str, Any]], None] | None = None,
                on_poll: Callable[[], None] | None = None, poll_seconds: float = 0.5,
                start_method: str | None = None) -> None:
    """Run a sweep with ``workers`` processes on this machine: this process is one of them and
    starts ``workers - 1`` others; returns when the sweep is done and they have exited."""
    import multiprocessing
    import sys

    method = start_method or _start_method(spec)
    context = multiprocessing.get_context(method)
    processes = [context.Process(target=_worker_process, name=f"lrkit-sweep-{i + 1}",
                                 args=(handle, study_name, spec, threads, os.getpid()),
                                 daemon=False)
                 for i in range(workers - 1)]
    # spawn re-imports the parent's main script in each child. Only a recipe defined there needs
    # it; otherwise hide the script, so that a script without an ``if __name__ == "__main__":``
    # guard (or one read from stdin) does not run again in every worker.
    main = sys.modules.get("__main__")
    hide = (method == "spawn" and main is not None
            and getattr(spec.problem, "__module__", None) != "__main__")
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if hide and k in main.__dict__}
    try:
        if hide:
            main.__spec__ = None
            main.__dict__.pop("__file__", None)
        for process in processes:
            process.start()
    finally:
        if hide:
            main.__dict__.update(saved)

    def trial_done(info: dict[str, Any]) -> None:
        if on_trial is not None:
            on_trial(info)

    try:
        run_worker(handle, study_name, spec, threads=threads, on_trial=trial_done)
        while any(p.is_alive() for p in processes):  # they finish their last trials
            if on_poll is not None:
                on_poll()
            for p in processes:
                p.join(timeout=poll_seconds / max(1, len(processes)))
    except BaseException:
        for p in processes:
            if p.is_alive():
                p.terminate()
        for p in processes:
            p.join(timeout=10)
        raise
    failed = [p for p in processes if p.exitcode not in (0, None)]
    codes = ", ".join(f"{p.name} exit {p.exitcode}" for p in failed)
    if any(p.exitcode > 0 for p in failed):  # a worker's trial raised: it printed the error
        raise LrkitError(f"{len(failed)} of {workers - 1} worker processes failed ({codes}); "
                         "see their errors above. Rerun the same command to resume.")
    if failed:
        # killed by a signal (the OOM killer, kill -9): this process recovered their trials and
        # ran them again, and has seen the plan done; the sweep is complete, the result valid
        logging.getLogger("lrkit.sweep").warning(
            "lrkit sweep: %d of %d worker processes were stopped by a signal (%s); their trials "
            "were run again by the others, and the sweep is complete", len(failed), workers - 1,
            codes)
