"""The command line in real shells and schedulers: closed standard streams, encodings that cannot
print a path, SIGTERM, a recipe that calls sys.exit, a full disk behind stdout, a closed pipe on
stderr. Most run ``python -m lrkit`` in a subprocess, as a shell would."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import lrkit.cli as cli

SCHEDULE_NOTE = ["schedule", "show", "cosine(100)", "--steps", "100",
                 "--compare", "peak(cosine(100), 0.1)", "--json"]  # its note goes to stderr


def _lrkit(args, *, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=None, **options):
    return subprocess.run([sys.executable, "-m", "lrkit", *args], stdout=stdout, stderr=stderr,
                          stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})},
                          timeout=120, **options)


def _closed_fd_shell(args, redirect, tmp_path):
    """``python -m lrkit ARGS >out 2>err`` with one of them replaced by ``redirect`` (``2>&-``)."""
    command = " ".join([f"'{sys.executable}'", "-m", "lrkit",
                        *("'" + a.replace("'", "'\\''") + "'" for a in args)])
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    files = {"2>&-": f">'{out}' 2>&-", ">&-": f">&- 2>'{err}'"}[redirect]
    done = subprocess.run(["bash", "-c", f"{command} {files}"], stdin=subprocess.DEVNULL,
                          timeout=120)
    return (done.returncode, out.read_text() if out.exists() else "",
            err.read_text() if err.exists() else "")


def test_closed_stderr_keeps_the_json_on_stdout_alone(tmp_path):
    # 2>&-: sys.stderr was None, and what goes to stderr (the note) went into stdout's JSON
    code, out, _ = _closed_fd_shell(SCHEDULE_NOTE, "2>&-", tmp_path)
    assert code == 0
    json.loads(out)


def test_closed_stderr_with_a_recipe_redirect_does_not_crash(tmp_path):
    # 2>&-: find --json (stdout to stderr while the recipe runs) crashed, stdout empty
    code, out, _ = _closed_fd_shell(["find", "wine-logreg", "--steps", "20", "--noise-batches",
                                     "0", "--json"], "2>&-", tmp_path)
    assert code in (0, 1)
    assert json.loads(out)["kind"] == "lrkit.finder"


def test_closed_stdout_is_no_crash(tmp_path):
    # >&-: sys.stdout was None: an AttributeError traceback and exit status 1
    code, _, err = _closed_fd_shell(["schedule", "list"], ">&-", tmp_path)
    assert code == 0, err
    assert "Traceback" not in err


@pytest.mark.parametrize("encoding, folder", [("ascii", "r\u00e9sum\u00e9 \u00b5"),
                                              ("latin-1", "runs \u2192 \u65e5\u672c")])
def test_a_path_the_output_cannot_encode_is_no_crash(encoding, folder, tmp_path):
    # "plot written to <path>": a UnicodeEncodeError traceback after the plot was written
    where = tmp_path / folder
    where.mkdir()
    done = _lrkit(["schedule", "show", "cosine(100)", "--plot", str(where / "s.png")],
                  env={"PYTHONIOENCODING": encoding, "LC_ALL": "C", "LANG": "C"})
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert b"Traceback" not in done.stderr
    assert b"plot written to" in done.stdout


def test_sigterm_is_an_interrupt_with_its_cleanup_and_exit_status_143(tmp_path):
    # a scheduler's kill: the process died at once (status -15), no message, no cleanup
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        import lrkit.cli.schedule as schedule
        from lrkit.cli import main

        def run_list(args):
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(30)
            finally:
                open({str(tmp_path / "cleaned")!r}, "w").close()
            return 0

        schedule.run_list = run_list
        code = main(["schedule", "list"])
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # put back
        sys.exit(code)
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert done.returncode == 143, done.stderr
    assert done.stderr.decode().strip() == "lrkit schedule: terminated (SIGTERM)"
    assert (tmp_path / "cleaned").exists()


def test_sigterm_during_find_leaves_no_disk_snapshot(tmp_path):
    snapshots = tmp_path / "snap"
    snapshots.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "lrkit", "find", "digits-mlp", "--steps", "2000", "--no-progress",
         "--snapshot", "disk", "--snapshot-dir", str(snapshots)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not any(snapshots.iterdir()) and time.monotonic() < deadline:
            assert process.poll() is None
            time.sleep(0.02)
        assert any(snapshots.iterdir())
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, err
    assert b"terminated" in err and b"Traceback" not in err
    assert list(snapshots.iterdir()) == []  # the model's copy was left in the folder


@pytest.mark.parametrize("code", [0, 3])
def test_a_recipe_that_calls_sys_exit_is_an_error(code, tmp_path, capsys):
    # sys.exit(0) while the recipe was built: exit status 0, no result, not a word
    (tmp_path / "quits.py").write_text(f"import sys\n\ndef recipe(seed=0):\n    sys.exit({code})\n")
    try:
        status = cli.main(["find", f"{tmp_path / 'quits.py'}:recipe", "--steps", "20"])
    except SystemExit as exc:
        status = f"SystemExit({exc.code})"
    assert status == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"sys.exit({code})" in err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_behind_stdout_is_one_line():
    with open("/dev/full", "w") as full:
        done = _lrkit(["schedule", "list"], stdout=full)
    assert done.returncode == 2
    assert b"Traceback" not in done.stderr and b"Exception ignored" not in done.stderr
    assert b"No space left on device" in done.stderr


def test_an_error_into_a_closed_pipe_keeps_exit_status_2():
    # `lrkit find nosuch 2>&1 | head -0`: the error's print raised BrokenPipeError, status 1
    read, write = os.pipe()
    os.close(read)
    try:
        done = _lrkit(["find", "nosuch"], stdout=write, stderr=write)
    finally:
        os.close(write)
    assert done.returncode == 2


def test_ctrl_c_while_the_parser_is_built_is_one_line(monkeypatch, capsys):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    try:
        status = cli.main(["schedule", "list"])
    except KeyboardInterrupt:
        status = "KeyboardInterrupt"
    assert status == 130
    assert capsys.readouterr().err == "lrkit: interrupted\n"


def test_sigterm_under_a_handler_of_the_run_is_still_terminated_not_the_recipe(tmp_path):
    # ray.init puts in its own SIGTERM handler, sys.exit(15): a SIGTERM then, not the recipe's
    script = textwrap.dedent("""
        import os, signal, sys, time
        import lrkit.cli.schedule as schedule
        from lrkit.cli import main

        def run_list(args):
            signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
            return 0

        schedule.run_list = run_list
        sys.exit(main(["schedule", "list"]))
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert done.returncode == 143, done.stderr
    assert done.stderr.decode().strip() == "lrkit schedule: terminated (SIGTERM)"
