"""The user's files come first (issue 9): nothing the user had is lost, every file a run will
write is checked before the first iteration, and no file name makes charrnn hang or crash.

- a new model never deletes a best twin or history it does not own, and --force replaces only
  charrnn's own files (never the text, never a file that is not a checkpoint);
- `plot -o` replaces only PNG files;
- two trainings cannot write one checkpoint at once (a lock, with two real processes);
- --resume through a symlink writes the link's target; a best twin is not trained into;
- files get the mode a plain open() gives (the umask's), not 0600;
- FIFOs and devices are refused at once; odd environments give one-line errors.

Commands run in-process through CliRunner (helpers from test_bad_input), or as real processes
with a timeout where blocking or two processes are the point.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import charrnn.train
from charrnn.checkpoint import load_checkpoint
from charrnn.runfiles import RunLock, default_checkpoint_for
from test_bad_input import assert_mentions, error_line, make_text, options, run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX files and signals")


pytestmark = pytest.mark.usefixtures("in_tmp_path")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A text and a 5-iteration model with its twins: (text, {suffix: bytes})."""
    folder = tmp_path_factory.mktemp("trained")
    text = make_text(np.random.default_rng(4))
    (folder / "text.txt").write_text(text, encoding="utf-8")
    result = run("train", folder / "text.txt", "--checkpoint", folder / "m.npz", *options())
    assert result.exit_code == 0, result.output
    return text, {suffix: (folder / ("m" + suffix)).read_bytes()
                  for suffix in (".npz", ".best.npz", ".csv")}


@pytest.fixture
def model(tmp_path, trained):
    """tmp_path/text.txt and tmp_path/m.npz, m.best.npz, m.csv."""
    text, files = trained
    (tmp_path / "text.txt").write_text(text, encoding="utf-8")
    for suffix, data in files.items():
        (tmp_path / ("m" + suffix)).write_bytes(data)
    return tmp_path / "text.txt", tmp_path / "m.npz"


def snapshot(folder) -> dict:
    """Every file (bytes), folder (None) and link or special file (what it is) under ``folder``;
    a FIFO is never opened (that would block)."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            key = os.path.relpath(path, folder)
            if os.path.islink(path):
                found[key] = "link to " + os.readlink(path)
            elif os.path.isdir(path):
                found[key] = None
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    found[key] = f.read()
            else:
                found[key] = "special"
    return found


def forbid_training(monkeypatch):
    def step(self):
        raise AssertionError("training started although a file of the run cannot be written")
    monkeypatch.setattr(charrnn.train.Trainer, "step", step)


def refused(tmp_path, *args, code=1) -> str:
    """Run a command that must fail with one line and change no file; return the message."""
    before = snapshot(tmp_path)
    message = error_line(run(*args), code)
    assert snapshot(tmp_path) == before, "a refused command changed or created files"
    return message


# --------------------------------------------------------------------------- nothing is lost

@pytest.mark.parametrize("orphans", [(".best.npz",), (".csv",), (".best.npz", ".csv")])
@pytest.mark.parametrize("flags", [[], ["--force"]], ids=["new", "force"])
def test_a_new_model_never_deletes_a_best_twin_or_history_left_without_its_model(
        tmp_path, model, orphans, flags):
    """The folder holds only keep.best.npz (the model was moved away): it may be the only copy
    of a model, so neither a new model nor --force may delete it."""
    text_path, checkpoint = model
    for suffix in (".npz", ".best.npz", ".csv"):
        if suffix not in orphans:
            os.remove(tmp_path / ("m" + suffix))
    message = refused(tmp_path, "train", text_path, "--checkpoint", checkpoint, *flags,
                      *options())
    for suffix in orphans:
        assert_mentions(message, "m" + suffix.replace(".", r"\."))
    assert_mentions(message, "another --checkpoint")


def test_orphaned_best_twin_message_says_how_to_resume_it(tmp_path, model):
    text_path, checkpoint = model
    os.remove(checkpoint)
    os.remove(tmp_path / "m.csv")
    message = refused(tmp_path, "train", text_path, "--checkpoint", checkpoint, *options())
    assert_mentions(message, r"cp \S*m\.best\.npz \S*m\.npz", "--resume")


def test_force_still_replaces_our_own_model_and_its_twins(tmp_path, model):
    text_path, checkpoint = model
    loud = [arg for arg in options() if arg != "--quiet"]
    result = run("train", text_path, "--checkpoint", checkpoint, "--force", *loud)
    assert result.exit_code == 0, result.output
    assert "removed" in result.stderr


@pytest.mark.parametrize("target", [".npz", ".best.npz", ".csv"])
@pytest.mark.parametrize("link", ["same name", "symlink", "hardlink"])
def test_the_training_text_is_never_overwritten(tmp_path, model, target, link):
    """`charrnn train corpus.npz --checkpoint corpus.npz --force` and relatives: the text is
    one of the run's files, by name or through a link."""
    text_path, checkpoint = model
    victim = tmp_path / ("m" + target)
    victim.unlink()
    if link == "same name":
        shutil.copy(text_path, victim)
        text_arg = victim
    elif link == "symlink":
        victim.symlink_to(text_path.name)
        text_arg = text_path
    else:
        os.link(text_path, victim)
        text_arg = text_path
    if target != ".npz":   # the model stays: resume it
        message = refused(tmp_path, "train", text_arg, "--checkpoint", checkpoint, "--resume",
                          "--max-iters", "12", "--quiet")
    else:
        message = refused(tmp_path, "train", text_arg, "--checkpoint", checkpoint, "--force",
                          *options())
    assert_mentions(message, "m" + target.replace(".", r"\."), "overwrite|not a charrnn|replace")


@pytest.mark.parametrize("content", [b"PK\x03\x04 not really a zip", b"my,data\n1,2\n", "npz"])
def test_force_refuses_a_file_that_is_not_a_charrnn_checkpoint(tmp_path, model, content):
    text_path, checkpoint = model
    for suffix in (".best.npz", ".csv"):
        os.remove(tmp_path / ("m" + suffix))
    if content == "npz":   # a real .npz of the user's own arrays
        np.savez(checkpoint, weights=np.arange(5))
    else:
        checkpoint.write_bytes(content)
    message = refused(tmp_path, "train", text_path, "--checkpoint", checkpoint, "--force",
                      *options())
    assert_mentions(message, "m.npz", "not a charrnn checkpoint")


@pytest.mark.parametrize("twin, content", [(".csv", b"name,amount\nrent,900\n"),
                                           (".best.npz", b"my own notes")])
@pytest.mark.parametrize("flag", ["--force", "--resume"])
def test_twins_that_are_not_ours_are_neither_removed_nor_replaced(tmp_path, model, twin,
                                                                  content, flag):
    """m.csv is the user's spreadsheet: --force would delete it, --resume rewrite it."""
    text_path, checkpoint = model
    (tmp_path / ("m" + twin)).write_bytes(content)
    message = refused(tmp_path, "train", text_path, "--checkpoint", checkpoint, flag,
                      *options(max_iters=12))
    assert_mentions(message, "m" + twin.replace(".", r"\."), "not a charrnn")


@pytest.mark.parametrize("victim", ["text.txt", "m.csv", "notes.png"])
def test_plot_replaces_only_png_files(tmp_path, model, victim):
    """The rule: -o may replace a file only if it starts with the PNG signature (a plot made
    before); the text, the history, or a file merely named .png are refused."""
    _, checkpoint = model
    (tmp_path / "notes.png").write_text("not an image, whatever the name says")
    message = refused(tmp_path, "plot", checkpoint, "-o", tmp_path / victim)
    assert_mentions(message, victim.replace(".", r"\."), "not a PNG")


def test_plot_replaces_an_old_png_atomically(tmp_path, model, monkeypatch):
    """A plot that fails half-way (a full disk) leaves the old PNG whole, and no temporary."""
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure
    _, checkpoint = model
    old = tmp_path / "curves.png"
    old.write_bytes(PNG_SIGNATURE + b"an old plot")
    before = snapshot(tmp_path)

    def full_disk(self, target, *args, **kwargs):
        if isinstance(target, (str, os.PathLike)):
            with open(target, "wb") as f:
                f.write(PNG_SIGNATURE[:4])
        else:
            target.write(PNG_SIGNATURE[:4])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", full_disk)
    message = error_line(run("plot", checkpoint, "-o", old))
    monkeypatch.undo()
    assert_mentions(message, "curves.png", "space")
    assert snapshot(tmp_path) == before
    result = run("plot", checkpoint, "-o", old)
    assert result.exit_code == 0, result.output
    assert old.read_bytes().startswith(PNG_SIGNATURE) and len(old.read_bytes()) > 1000


# --------------------------------------------------------------------------- the lock

def charrnn_command(*args) -> list[str]:
    return [sys.executable, "-m", "charrnn", *[str(a) for a in args]]


def start_endless_training(tmp_path, *extra) -> subprocess.Popen:
    """A real training process that runs until signalled; returns once it holds the lock
    and has saved the checkpoint at least once."""
    saved_before = os.stat(tmp_path / "m.npz").st_mtime_ns
    stderr = open(tmp_path / "first.err", "w")
    process = subprocess.Popen(
        charrnn_command("train", "text.txt", "--checkpoint", "m.npz", *extra,
                        *options(max_iters=10**8, checkpoint_every=50, eval_every=50)),
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=stderr)
    stderr.close()
    deadline = time.monotonic() + 60

    def started() -> bool:
        try:
            held = (tmp_path / ".m.npz.lock").read_text().split()[:1] == [str(process.pid)]
            return held and os.stat(tmp_path / "m.npz").st_mtime_ns != saved_before
        except OSError:
            return False

    while not started():
        assert process.poll() is None, (tmp_path / "first.err").read_text()
        assert time.monotonic() < deadline, "the training process did not start"
        time.sleep(0.05)
    return process


@posix_only
def test_a_second_training_of_the_same_checkpoint_is_refused_naming_the_first(tmp_path, model):
    """Two real processes: the second refuses at once, naming the first one's PID; the first,
    stopped by SIGTERM, saves and removes its lock. Then a run killed by SIGKILL leaves a stale
    lock, which the next run takes over with a note."""
    first = start_endless_training(tmp_path, "--resume")
    try:
        lock = tmp_path / ".m.npz.lock"
        assert lock.exists()
        for flags in (["--resume"], ["--force"]):
            second = subprocess.run(
                charrnn_command("train", "text.txt", "--checkpoint", "m.npz", *flags,
                                *options(max_iters=12)),
                cwd=tmp_path, capture_output=True, text=True, timeout=60)
            assert second.returncode == 1, second.stderr
            lines = second.stderr.strip().splitlines()
            assert len(lines) == 1 and "Traceback" not in second.stderr
            assert_mentions(lines[0], f"process {first.pid}", "another --checkpoint")
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert not lock.exists()
    assert load_checkpoint(tmp_path / "m.npz").state["iteration"] > 5

    killed = start_endless_training(tmp_path, "--resume")
    killed.kill()
    killed.wait()
    assert lock.exists()
    after = subprocess.run(charrnn_command("train", "text.txt", "--checkpoint", "m.npz",
                                           "--resume", "--max-iters", "1"),
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert after.returncode == 0, after.stderr
    assert_mentions(after.stderr, f"took over .*process {killed.pid}")
    assert not lock.exists()


def test_lock_held_in_this_process_refuses_a_run_and_changes_nothing(tmp_path, model):
    text_path, checkpoint = model
    with RunLock(str(checkpoint)):
        message = refused(tmp_path, "train", text_path, "--checkpoint", checkpoint, "--resume",
                          *options(max_iters=12))
    assert_mentions(message, f"process {os.getpid()}")
    assert socket.gethostname() not in message   # the same host is not worth naming


def test_the_lock_is_released_when_a_run_fails(tmp_path, model):
    """An error after the lock was taken (a text the model cannot read) leaves no lock."""
    text_path, checkpoint = model
    text_path.write_text("ZZZ unknown capitals", encoding="utf-8")
    refused(tmp_path, "train", text_path, "--checkpoint", checkpoint, "--resume",
            *options(max_iters=12))
    result = run("train", tmp_path / "nothere.txt", "--checkpoint", tmp_path / "new" / "x.npz",
                 *options())
    error_line(result)
    assert not (tmp_path / "new").exists(), "the folder made for the lock was left behind"


def test_a_folder_in_the_way_of_the_lock(tmp_path, model):
    text_path, checkpoint = model
    (tmp_path / ".m.npz.lock").mkdir()
    message = refused(tmp_path, "train", text_path, "--checkpoint", checkpoint, "--resume",
                      *options(max_iters=12))
    assert_mentions(message, r"\.m\.npz\.lock")


# --------------------------------------------------------------------------- symlinks and twins

def test_resume_through_a_symlink_writes_its_target_and_keeps_the_link(tmp_path, model):
    text_path, checkpoint = model
    real = tmp_path / "runs"
    real.mkdir()
    for suffix in (".npz", ".best.npz", ".csv"):
        os.replace(tmp_path / ("m" + suffix), real / ("m" + suffix))
    (tmp_path / "current.npz").symlink_to(os.path.join("runs", "m.npz"))
    result = run("train", text_path, "--checkpoint", "current.npz", "--resume",
                 *[arg for arg in options(max_iters=12) if arg != "--quiet"])
    assert result.exit_code == 0, result.output
    assert os.path.islink(tmp_path / "current.npz")
    assert load_checkpoint(real / "m.npz").state["iteration"] == 12
    assert (real / "m.csv").read_text().count("\n") == 4   # header + evaluations at 5, 10, 12
    assert not (tmp_path / "current.csv").exists() and not (tmp_path / "current.best.npz").exists()
    assert "symbolic link" in result.stderr


@pytest.mark.parametrize("via_link", [False, True])
def test_a_best_twin_is_not_trained_into(tmp_path, model, via_link):
    """--resume --checkpoint m.best.npz would rewrite m.csv, the history of m.npz."""
    text_path, _ = model
    name = "m.best.npz"
    if via_link:
        (tmp_path / "b.npz").symlink_to("m.best.npz")
        name = "b.npz"
    message = refused(tmp_path, "train", text_path, "--checkpoint", name, "--resume",
                      *options(max_iters=12))
    assert_mentions(message, r"\.best\.npz", r"cp \S*m\.best\.npz")


def test_a_text_named_like_a_best_twin_gets_a_checkpoint_of_its_own(tmp_path, trained):
    """`charrnn train songs.best.txt` must not make checkpoints/songs.best.npz, which the tool
    would take for the best twin of songs.npz (and `sample` would never find)."""
    text, _ = trained
    (tmp_path / "songs.best.txt").write_text(text, encoding="utf-8")
    assert default_checkpoint_for("songs.best.txt", "checkpoints") == os.path.join(
        "checkpoints", "songs-best.npz")
    result = run("train", "songs.best.txt", *options())
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path / "checkpoints")) == [
        "songs-best.best.npz", "songs-best.csv", "songs-best.npz"]
    sampled = run("sample", "-n", "5")
    assert sampled.exit_code == 0 and "songs-best.npz" in sampled.stderr


# --------------------------------------------------------------------------- modes

@posix_only
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_get_the_umask_mode_not_0600(tmp_path, trained, umask):
    text, _ = trained
    (tmp_path / "text.txt").write_text(text, encoding="utf-8")
    previous = os.umask(umask)
    try:
        result = run("train", "text.txt", "--checkpoint", "m.npz", *options())
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.output
    for name in ("m.npz", "m.best.npz", "m.csv"):
        assert oct(os.stat(tmp_path / name).st_mode & 0o777) == oct(0o666 & ~umask), name


@posix_only
def test_a_resumed_file_keeps_its_own_mode(tmp_path, model):
    text_path, checkpoint = model
    os.chmod(checkpoint, 0o640)
    os.chmod(tmp_path / "m.csv", 0o604)
    result = run("train", text_path, "--checkpoint", checkpoint, "--resume",
                 *options(max_iters=12))
    assert result.exit_code == 0, result.output
    assert os.stat(checkpoint).st_mode & 0o777 == 0o640
    assert os.stat(tmp_path / "m.csv").st_mode & 0o777 == 0o604


# --------------------------------------------------------------------------- preflight

@pytest.mark.parametrize("blocker", ["best is a folder", "csv is a folder", "best is a FIFO"])
def test_a_twin_that_cannot_be_written_stops_the_run_before_training(tmp_path, model,
                                                                    monkeypatch, blocker):
    text_path, checkpoint = model
    target = tmp_path / ("m.best.npz" if blocker.startswith("best") else "m.csv")
    target.unlink()
    if blocker.endswith("folder"):
        target.mkdir()
    else:
        os.mkfifo(target)
    forbid_training(monkeypatch)
    message = refused(tmp_path, "train", text_path, "--checkpoint", checkpoint, "--resume",
                      *options(max_iters=12))
    assert_mentions(message, target.name.replace(".", r"\."))


@pytest.mark.parametrize("name", ["m.csv", "m.best.npz"])
def test_a_read_only_or_immutable_twin_stops_the_run_before_training(tmp_path, model,
                                                                    monkeypatch, name):
    """Simulated (root ignores permissions): os.access says the file cannot be written, as
    for a chmod 444 file of a normal user or a chattr +i file."""
    text_path, checkpoint = model
    real_access = os.access
    locked = str(tmp_path / name)

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and os.path.realpath(os.fspath(path)) == locked:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    forbid_training(monkeypatch)
    message = refused(tmp_path, "train", text_path, "--checkpoint", checkpoint, "--resume",
                      *options(max_iters=12))
    assert_mentions(message, name.replace(".", r"\."), "read-only")


# --------------------------------------------------------------------------- never hang

@posix_only
@pytest.mark.parametrize("command", ["train-text", "eval-text", "info", "sample",
                                     "train-stdin-pipe"])
def test_fifos_and_pipes_are_refused_without_blocking(tmp_path, model, command):
    """Nobody ever writes to the FIFO: reading it would block forever."""
    _, checkpoint = model
    os.mkfifo(tmp_path / "fifo")
    stdin = subprocess.DEVNULL
    args = {"train-text": ["train", "fifo", "--checkpoint", "new.npz", *options()],
            "eval-text": ["eval", "fifo", "--checkpoint", checkpoint],
            "info": ["info", "fifo"],
            "sample": ["sample", "--checkpoint", "fifo"],
            "train-stdin-pipe": ["train", "/dev/stdin", "--checkpoint", "new.npz", *options()],
            }[command]
    if command == "train-stdin-pipe":
        stdin = subprocess.PIPE
    before = snapshot(tmp_path)
    done = subprocess.run(charrnn_command(*args), cwd=tmp_path, capture_output=True,
                          input="some text\n" if stdin == subprocess.PIPE else None,
                          stdin=None if stdin == subprocess.PIPE else stdin, text=True, timeout=30)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert_mentions(lines[0], "FIFO|pipe|not a regular file")
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------- odd environments

def test_a_dangling_symlink_among_the_checkpoints(tmp_path, model):
    _, checkpoint = model
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "zzz.npz").symlink_to("gone.npz")
    message = refused(tmp_path, "sample", "-n", "5")
    assert_mentions(message, "no checkpoint found")
    shutil.copy(checkpoint, folder / "real.npz")
    os.utime(folder / "real.npz", (1, 1))   # older than anything, yet the only real one
    result = run("info")
    assert result.exit_code == 0, result.output
    assert "real.npz" in result.stdout


@posix_only
@pytest.mark.parametrize("command", ["train", "sample", "plot"])
def test_a_deleted_current_folder(tmp_path, model, monkeypatch, command):
    text_path, checkpoint = model
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    args = {"train": ["train", text_path, "--checkpoint", "m.npz", *options()],
            "sample": ["sample", "-n", "5"],
            "plot": ["plot", checkpoint, "-o", "out.png"]}[command]
    message = error_line(run(*args))
    assert_mentions(message, "current folder")
