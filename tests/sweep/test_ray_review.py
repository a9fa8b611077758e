"""The Ray Tune engine as a user meets it: recipe files and their neighbours, the working
directory, addresses that lead nowhere, failing recipes, Ray sessions of the caller.

Runs on a real local Ray with 2 CPUs (one per test module, as tests/sweep/test_ray_engine.py);
each sweep is two or three rates of the built-in ``logreg`` for 20 steps.
"""
import io
import json
import os
import subprocess
import sys
import textwrap

import pytest
import ray

import lrkit
from lrkit.cli import main
from lrkit.errors import LrkitError

from tests.sweep.helpers import subprocess_env

RECIPE = textwrap.dedent('''
    import lrkit.examples
    from neighbour import EXAMPLE   # a module beside this file

    def make(seed=0):
        print("building", EXAMPLE)          # on stdout, as recipes do
        with open("data/scale.txt") as f:   # relative to the directory the sweep ran from
            assert f.read().strip() == "1"
        return lrkit.examples.build(EXAMPLE, seed=seed)
''')


@pytest.mark.timeout(60)
def test_more_threads_than_the_local_ray_has_cpus_is_refused_not_a_hang(tmp_path):
    # first in this module, before the module's Ray starts: the sweep starts its own local Ray.
    # A trial asking for more CPUs than it has waited for ever (--threads 3 on 2 CPUs: killed
    # after 100 s)
    if ray.is_initialized():  # left by another module
        ray.shutdown()
    threads = (os.cpu_count() or 1) + 1
    with pytest.raises(LrkitError, match=rf"threads={threads}: each trial reserves {threads} "
                                         r"CPUs, but the local Ray started for this sweep has "
                                         r"\d+; give threads <= \d+, or run on a cluster"):
        lrkit.sweep("logreg", engine="ray", threads=threads, lrs="0.01,0.1", budget=20,
                    progress=False, storage=str(tmp_path))
    assert not ray.is_initialized()


ARGS = ["--engine", "ray", "--storage", "runs", "--lrs", "0.01,0.1", "--budget", "20"]


@pytest.fixture(scope="module")
def project(local_ray, tmp_path_factory):
    """``lrkit sweep train.py:make --engine ray --json`` run in a project directory holding
    train.py, its neighbour module and data/: (exit code, stdout, stderr, directory)."""
    root = tmp_path_factory.mktemp("project")
    (root / "train.py").write_text(RECIPE)
    (root / "neighbour.py").write_text("EXAMPLE = 'logreg'\n")
    (root / "data").mkdir()
    (root / "data" / "scale.txt").write_text("1\n")
    before = os.getcwd()
    os.chdir(root)
    try:
        with pytest.MonkeyPatch.context() as mp:
            out, err = io.StringIO(), io.StringIO()
            mp.setattr(sys, "stdout", out)
            mp.setattr(sys, "stderr", err)
            code = main(["sweep", "train.py:make", *ARGS, "--no-progress", "--json"])
    finally:
        os.chdir(before)
    return code, out.getvalue(), err.getvalue(), root


def test_a_relative_recipe_file_its_neighbour_and_its_data_are_found_by_the_trials(project):
    # Tune runs each trial in a directory of its own: 'train.py' was looked up there (every
    # trial failed with "recipe file 'train.py' does not exist"), and so was the recipe's
    # data/scale.txt, which the Optuna engine's trials find in the directory of the sweep
    code, out, err, root = project
    assert code == 0, err[-2000:]
    data = json.loads(out[out.index("{"):])
    assert [(t["status"], t["error"]) for t in data["trials"]] == [("finished", None)] * 2
    assert os.path.isdir(root / "runs" / data["study_name"])


def test_json_on_stdout_is_the_json_alone(project):
    # the recipe's print (building the recipe once in this process) went to stdout before the
    # JSON; Ray's copies of its trial processes' lines went there too
    code, out, err, _ = project
    assert code == 0
    json.loads(out)
    assert "building logreg" in err


ADDRESSES = '''
import os, time, lrkit
from lrkit.errors import LrkitError
for address, env in (("127.0.0.1:1", None), ("ray://127.0.0.1:1", None), (None, "127.0.0.1:1")):
    if env:
        os.environ["RAY_ADDRESS"] = env
    started = time.monotonic()
    try:
        lrkit.sweep("logreg", engine="ray", ray_address=address, lrs="0.01,0.1", budget=20,
                    progress=False, storage=os.getcwd())
    except LrkitError as exc:
        print(f"{time.monotonic() - started:.1f}", exc)
'''


def test_an_address_where_nothing_listens_is_refused_at_once(tmp_path):
    # ray.init retried 127.0.0.1:1 for minutes (killed after 200 s), ray://127.0.0.1:1 took
    # 36 s and printed a warning
    run = subprocess.run([sys.executable, "-c", ADDRESSES], cwd=tmp_path, env=subprocess_env(),
                         capture_output=True, text=True, timeout=90)
    lines = run.stdout.splitlines()
    assert len(lines) == 3, run.stderr[-2000:]
    for line, shown in zip(lines, ["'127.0.0.1:1'", "'ray://127.0.0.1:1'",
                                   "RAY_ADDRESS='127.0.0.1:1'"]):
        seconds, message = line.split(" ", 1)
        assert float(seconds) < 10, line
        assert f"could not reach the Ray cluster at {shown}: nothing answers" in message, line
    assert "Check RAY_ADDRESS" in lines[2]
    assert run.stderr.strip() == ""


def test_resuming_with_the_workers_it_ran_with_is_not_refused(project, monkeypatch, capsys):
    # the project's sweep ran with the default workers (the cluster's 2 CPUs), stored as None:
    # --workers 2 was refused with "started with workers=None, now workers=2 ... give
    # workers=None", which no command line can give
    code, out, _, root = project
    monkeypatch.chdir(root)
    settings = dict(engine="ray", storage="runs", lrs="0.01,0.1", budget=20, progress=False)
    again = lrkit.sweep("train.py:make", workers=2, **settings)
    assert [(r.lr, r.loss) for r in again.records] == [
        (t["lr"], t["loss"]) for t in json.loads(out)["trials"]]
    with pytest.raises(LrkitError, match=r"started with workers=2, now workers=1: .* resume it "
                                         r"with workers=2 or without workers, or give another"):
        lrkit.sweep("train.py:make", workers=1, **settings)
    assert main(["sweep", "train.py:make", *ARGS, "--no-progress", "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "resume it with --workers=2 or without --workers, or give another --study-name" in err
    assert len(err.strip().splitlines()) == 1
