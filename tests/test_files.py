"""Result files are written whole or not at all (lrkit.files.write_atomically)."""
import os
import stat
import threading

import pytest

from lrkit.files import write_atomically


def test_a_failed_write_leaves_the_last_good_file_and_no_temporary_one(tmp_path, monkeypatch):
    path = tmp_path / "result.json"
    path.write_text("old\n")

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError):
        write_atomically(path, "new\n")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_a_symbolic_link_is_written_through_and_kept(tmp_path):
    target = tmp_path / "results" / "sweep.csv"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "latest.csv"
    link.symlink_to(target)
    write_atomically(link, "new")
    assert link.is_symlink() and target.read_text() == "new"


def test_the_files_permissions_are_kept(tmp_path):
    path = tmp_path / "recipe.json"
    path.write_text("{}")
    path.chmod(0o640)
    write_atomically(path, "{}\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_a_named_pipe_is_written_in_place(tmp_path):
    # --json /dev/stdout, or a pipe a script reads: no temporary file renamed over it
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    got = []
    reader = threading.Thread(target=lambda: got.append(pipe.read_text()))
    reader.start()
    write_atomically(pipe, "{}\n")
    reader.join(timeout=10)
    assert got == ["{}\n"] and stat.S_ISFIFO(pipe.stat().st_mode)


def test_a_sweeps_csv_with_a_name_that_is_not_utf8_is_written_not_truncated(tmp_path):
    # an error text holding a lone surrogate (a file name that is not UTF-8): Path.write_text
    # raised UnicodeEncodeError half-way, after emptying the last good CSV
    from lrkit.sweep.results import SweepResult, TrialRecord

    record = TrialRecord(number=0, optimizer="sgd", lr=0.01, seed=0, status="failed",
                         error="FileNotFoundError: /data/caf\udce9.pt")
    path = tmp_path / "sweep.csv"
    path.write_text("the last good export\n")
    SweepResult([record], settings={}, diagnose=False).to_csv(path)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("number,optimizer,lr") and "/data/caf?.pt" in text


def test_a_file_we_may_not_write_is_left_to_open(tmp_path, monkeypatch):
    # a read-only file: written in place, so that open() refuses it as it did (a rename over it
    # replaced it); as root open() writes it, and the file stays the same file
    path = tmp_path / "kept.json"
    path.write_text("mine")
    inode = path.stat().st_ino
    monkeypatch.setattr(os, "access", lambda p, m: False)
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    write_atomically(path, "new")
    assert opened == [path] and path.stat().st_ino == inode


def test_hard_links_are_kept_and_a_symlink_loop_raises(tmp_path):
    path, other = tmp_path / "a.json", tmp_path / "b.json"
    path.write_text("old")
    os.link(path, other)
    write_atomically(path, "new")
    assert other.read_text() == "new" and path.stat().st_nlink == 2
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(OSError):
        write_atomically(loop, "x")
    assert loop.is_symlink()
