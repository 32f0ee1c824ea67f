"""The files of a run: names (checkpoint, best twin, history), atomic writes with the right
mode, the lock, temporaries, and the checks made before the first iteration.

A run saved at ``m.npz`` writes three files side by side: the checkpoint ``m.npz``, its best
twin ``m.best.npz`` and its history ``m.csv``. Each is written through a temporary
``.<name>.<random>.tmp`` renamed over it, and while the run trains it holds the lock
``.m.npz.lock`` beside the checkpoint. charrnn replaces only files that are plainly its own
(a charrnn checkpoint, a charrnn history, a PNG, a page of ``charrnn viz``; exports are
checked alike in export.py) and never deletes a model it is not replacing.
Problems are raised as RunFilesError, with a one-line message for the user.
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import signal
import socket
import stat
import tempfile
import time
import zipfile
from contextlib import contextmanager

try:
    import fcntl
except ImportError:   # not POSIX: no flock (training runs unlocked, see RunLock)
    fcntl = None

HISTORY_COLUMNS = ("iteration", "chars_seen", "train_loss", "val_loss", "elapsed_seconds")
CHECKPOINT_KEYS = ("format_version", "vocab", "config", "state")   # what makes an .npz ours
ZIP_MAGIC = b"PK\x03\x04"   # an .npz is a zip archive
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The first bytes of every page `charrnn viz` writes: what makes an .html file ours.
VIZ_PAGE_SIGNATURE = b"<!DOCTYPE html>\n<!-- charrnn viz page -->\n"
VIZ_SUFFIX = ".viz.html"
# The first bytes of every page `charrnn page` writes (a model that writes in the browser).
WRITER_PAGE_SIGNATURE = b"<!DOCTYPE html>\n<!-- charrnn page -->\n"
WRITER_PAGE_SUFFIX = ".page.html"
BEST_SUFFIX = ".best"


class RunFilesError(Exception):
    """A file of the run cannot be used or written; the message says why in one line."""


def check_current_folder(*paths: str) -> None:
    """Raise RunFilesError if one of ``paths`` is relative and the current folder is gone
    (deleted or moved away under us: os.getcwd() then fails, and so does every relative name)."""
    if all(os.path.isabs(path) for path in paths):
        return
    try:
        os.getcwd()
    except OSError:
        raise RunFilesError("the current folder no longer exists (it was deleted or moved); "
                            "cd to an existing folder, or give absolute paths") from None


# --------------------------------------------------------------------------- names

def _stem(checkpoint_path: str) -> str:
    """``run.npz`` and ``run.best.npz`` -> ``run``."""
    stem, _ = os.path.splitext(checkpoint_path)
    return stem[:-len(BEST_SUFFIX)] if stem.endswith(BEST_SUFFIX) else stem


def best_path(checkpoint_path: str) -> str:
    """``run.npz`` -> ``run.best.npz``: where the lowest-validation-loss model is kept."""
    return _stem(checkpoint_path) + BEST_SUFFIX + ".npz"


def history_path(checkpoint_path: str) -> str:
    """``run.npz`` -> ``run.csv``: the evaluation history, one row per evaluation."""
    return _stem(checkpoint_path) + ".csv"


def is_best_name(path: str) -> bool:
    """True for ``run.best.npz``: the name of a best twin."""
    return os.path.splitext(path)[0].endswith(BEST_SUFFIX)


def checkpoint_target(checkpoint_path: str) -> str:
    """The file a checkpoint name stands for: the name itself, or, if it is a symbolic link,
    the absolute path of the file it points to (whose best twin and history are beside it)."""
    if os.path.islink(checkpoint_path):
        return os.path.realpath(checkpoint_path)
    return checkpoint_path


def lock_path(checkpoint_path: str) -> str:
    """``dir/run.npz`` -> ``dir/.run.npz.lock``, beside the file the checkpoint really is (so
    two names of one file, through a symlink, share one lock)."""
    real = os.path.realpath(checkpoint_path)
    return os.path.join(os.path.dirname(real), f".{os.path.basename(real)}.lock")


def default_checkpoint_for(text_file: str, folder: str) -> str:
    """``songs.txt`` -> ``<folder>/songs.npz``. A text named ``songs.best.txt`` gets
    ``songs-best.npz``: ``songs.best.npz`` would be taken for the best twin of ``songs.npz``."""
    stem = os.path.splitext(os.path.basename(text_file))[0] or "model"
    if stem.endswith(BEST_SUFFIX):
        stem = stem[:-len(BEST_SUFFIX)] + "-best"
    return os.path.join(folder, stem + ".npz")


def names_folder(path: str) -> bool:
    """True if ``path`` names a folder: an existing one (through symlinks too), or any name
    ending in a path separator (``newdir/``) or in ``.`` or ``..``, which can only be one."""
    separators = (os.sep, os.altsep) if os.altsep else (os.sep,)
    return (path.endswith(separators) or os.path.basename(path) in (".", "..")
            or os.path.isdir(path))


def refuse_folder(output: str, option: str, default_name: str) -> None:
    """The rule of every command that writes a file (train's checkpoint, plot, export, viz):
    an output that names a folder (see names_folder) is refused, before anything is written,
    with the name the file would get there as an example. RunFilesError."""
    if not names_folder(output):
        return
    why = "is a directory" if os.path.isdir(output) else "names a directory"
    example = os.path.join(output, default_name)
    raise RunFilesError(f"{option} {output} {why}; name a file, e.g. {example}")


def check_training_name(checkpoint_path: str) -> None:
    """Refuse checkpoint names a training run cannot use (RunFilesError)."""
    if not checkpoint_path.endswith(".npz"):
        raise RunFilesError(
            f"--checkpoint {checkpoint_path}: the name must end in .npz (its .csv history and "
            f".best.npz twin are named after it)")
    if is_best_name(checkpoint_path):
        own = _stem(checkpoint_path) + "-best.npz"
        raise RunFilesError(
            f"--checkpoint {checkpoint_path}: names ending in .best.npz are kept for best twins "
            f"(a run there would rewrite {history_path(checkpoint_path)}, the history of "
            f"{_stem(checkpoint_path)}.npz); to train a best model further, copy it to a name of "
            f"its own first (cp {checkpoint_path} {own}) and --resume that")


def _texts(text_file) -> list[str]:
    """One text file's name, or the names of several (a corpus), as a list."""
    return [text_file] if isinstance(text_file, str) else [path for path in text_file if path]


def training_checkpoint(checkpoint_path: str, text_file) -> str:
    """The file a training run at ``checkpoint_path`` writes: checks the name
    (check_training_name) and, if it is a symbolic link, its target's name too, and returns
    the target (see checkpoint_target). ``text_file``: a path, or a list of the corpus's.
    Raises RunFilesError."""
    texts = _texts(text_file)
    refuse_folder(checkpoint_path, "--checkpoint",
                  os.path.basename(default_checkpoint_for(texts[0] if texts else "model", ".")))
    check_training_name(checkpoint_path)
    target = checkpoint_target(checkpoint_path)
    if target == checkpoint_path:
        return target
    linked = [text for text in _texts(text_file) if same_file(text, checkpoint_path)]
    if linked:
        text_file = linked[0]
        raise RunFilesError(f"{text_file} is the text to train on, and {checkpoint_path} is a "
                            f"link to it: training would overwrite it; choose another --checkpoint")
    try:
        check_training_name(target)
    except RunFilesError as error:
        raise RunFilesError(f"{checkpoint_path} is a symbolic link to {target}; "
                            f"{str(error).split(': ', 1)[1]}") from None
    return target


def checkpoints_in(folder: str) -> list[str]:
    """The checkpoint files in ``folder``, most recently modified first: every regular
    ``*.npz`` but the .best twins (dangling symlinks and other kinds of file left out)."""
    check_current_folder(folder)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    found = []
    for name in names:
        if not name.endswith(".npz") or is_best_name(name):
            continue
        path = os.path.join(folder, name)
        try:
            info = os.stat(path)
        except OSError:   # a dangling symlink, or removed since listdir
            continue
        if stat.S_ISREG(info.st_mode):
            found.append((info.st_mtime, path))
    return [path for _, path in sorted(found, reverse=True)]


def latest_checkpoint(folder: str) -> str | None:
    """The most recently modified checkpoint file in ``folder`` (see checkpoints_in), or None."""
    found = checkpoints_in(folder)
    return found[0] if found else None


# --------------------------------------------------------------------------- what a file is

def not_a_regular_file(path: str) -> str | None:
    """What ``path`` is when it exists but is not a regular file ("a FIFO (named pipe)", ...),
    else None. Only stats the file: never opens it, so a FIFO cannot block here."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _starts_with(path: str, prefix: bytes) -> bool:
    if not os.path.isfile(path):
        return False
    try:
        with open(path, "rb") as f:
            return f.read(len(prefix)) == prefix
    except OSError:
        return False


def viz_path(checkpoint_path: str, text_name: str | None = None) -> str:
    """The default name of the page `charrnn viz` writes of a checkpoint and a text, so that a
    second text does not replace the first's page: ``run.npz`` and ``passage.txt`` ->
    ``run.passage.viz.html`` (``run.best.npz`` -> ``run.best.passage.viz.html``); without
    ``text_name``, ``run.viz.html``."""
    stem = os.path.splitext(checkpoint_path)[0]
    return stem + (f".{text_name}" if text_name else "") + VIZ_SUFFIX


def text_page_name(text: str) -> str:
    """What a page of a text given inline (``--text``) is called: its first words, in
    lower-case letters and digits joined by hyphens (``But soft, what light`` ->
    ``but-soft-what-light``), or ``text-`` and a hash of it where it has none."""
    words = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if words:
        return words[:24].rstrip("-")
    return "text-" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def plot_path(checkpoint_path: str) -> str:
    """``run.npz`` -> ``run.png``: the default name of the PNG `charrnn plot` writes."""
    return os.path.splitext(checkpoint_path)[0] + ".png"


def is_charrnn_checkpoint(path: str) -> bool:
    """True if ``path`` is a regular file and an .npz holding a checkpoint's keys (the arrays
    themselves are not read: see checkpoint.load_checkpoint for that)."""
    if not _starts_with(path, ZIP_MAGIC):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except Exception:   # any parser failure on arbitrary bytes means the same: not ours
        return False
    return all(key + ".npy" in names for key in CHECKPOINT_KEYS)


def is_charrnn_history(path: str) -> bool:
    """True if ``path`` is a regular file whose first line is charrnn's history header."""
    return _starts_with(path, (",".join(HISTORY_COLUMNS) + "\r\n").encode()) or \
        _starts_with(path, (",".join(HISTORY_COLUMNS) + "\n").encode())


def is_viz_page(path: str) -> bool:
    """True if ``path`` is a regular file that starts as every `charrnn viz` page does."""
    return _starts_with(path, VIZ_PAGE_SIGNATURE)


def is_writer_page(path: str) -> bool:
    """True if ``path`` is a regular file that starts as every `charrnn page` page does."""
    return _starts_with(path, WRITER_PAGE_SIGNATURE)


def writer_page_path(checkpoint_path: str) -> str:
    """``run.npz`` -> ``run.page.html``: the default name of the page `charrnn page` writes."""
    return os.path.splitext(checkpoint_path)[0] + WRITER_PAGE_SUFFIX


EXPORT_JSON_PREFIX = b'{"format": "charrnn-export"'   # how every JSON export begins


def is_charrnn_file(path: str) -> bool:
    """True for a file charrnn writes (checkpoint, history, viz page, plot, export, lock): never
    text to learn. Only files with those names' endings are opened, and only their first bytes."""
    name = os.path.basename(path)
    if name.endswith((".npz", ".lock", ".tmp", ".safetensors")):
        return name.endswith((".npz", ".safetensors")) or name.startswith(".")
    if name.endswith(".csv"):
        return is_charrnn_history(path)
    if name.endswith(".html"):
        return is_viz_page(path)
    if name.endswith(".png"):
        return is_png(path)
    if name.endswith(".json"):
        return _starts_with(path, EXPORT_JSON_PREFIX)
    return False


def is_png(path: str) -> bool:
    """True if ``path`` is a regular file that starts with the PNG signature."""
    return _starts_with(path, PNG_SIGNATURE)


def same_file(a: str, b: str) -> bool:
    """True if ``a`` and ``b`` are one file (by device and inode, so through symlinks and
    hard links too); False if either does not exist."""
    try:
        first, second = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def check_plot_output(output: str, checkpoint_path: str) -> None:
    """Refuse a PNG name that would overwrite anything but a PNG (RunFilesError).

    The rule: a new file, or an existing regular file that starts with the PNG signature
    (a plot made before). Never the checkpoint, a text, a history CSV or a folder.
    """
    refuse_folder(output, "-o", os.path.basename(plot_path(checkpoint_path)))
    _check_replaceable(output, checkpoint_path, None, "a .png file", is_png,
                       "is not a PNG image; charrnn replaces only PNG files")


def check_page_output(output: str, checkpoint_path: str, text_file: str | None = None) -> None:
    """Refuse a page name that would overwrite anything but a page `charrnn viz` wrote
    (RunFilesError), as check_plot_output does for plots.

    The rule: a new file, or an existing regular file that starts with VIZ_PAGE_SIGNATURE.
    Never the checkpoint (or any .npz), the text, a history CSV, another HTML file or a folder.
    """
    refuse_folder(output, "-o", os.path.basename(viz_path(checkpoint_path)))
    _check_replaceable(output, checkpoint_path, text_file, "an .html file", is_viz_page,
                       "is not a page charrnn viz wrote; charrnn replaces only its own pages")


def check_writer_page_output(output: str, checkpoint_path: str) -> None:
    """Refuse a name for `charrnn page`'s page that would overwrite anything but a page
    charrnn wrote (either kind), as check_page_output does for viz (RunFilesError)."""
    _check_replaceable(output, checkpoint_path, None, "an .html file",
                       lambda path: is_writer_page(path) or is_viz_page(path),
                       "is not a page charrnn wrote; charrnn replaces only its own pages")


def _check_replaceable(output: str, checkpoint_path: str, text_file: str | None, hint: str,
                       is_ours, not_ours: str) -> None:
    """Raise RunFilesError unless ``output`` is a new name or a regular file ``is_ours``
    accepts; never the checkpoint (or any .npz) or the text. ``hint`` names the kind of file
    to give instead, ``not_ours`` says why an existing file is refused."""
    check_current_folder(output, checkpoint_path, *([text_file] if text_file else []))
    if output.endswith(".npz") or same_file(output, checkpoint_path) or \
            os.path.abspath(output) == os.path.abspath(checkpoint_path):
        raise RunFilesError(f"-o {output} would overwrite a checkpoint; name {hint}")
    if text_file is not None and (same_file(output, text_file) or
                                  os.path.abspath(output) == os.path.abspath(text_file)):
        raise RunFilesError(f"-o {output} is the text being shown; name {hint}")
    if not os.path.lexists(output):
        return
    kind = not_a_regular_file(output)
    if kind:
        raise RunFilesError(f"-o {output} is {kind}; name {hint}")
    if os.path.exists(output) and not is_ours(output):
        raise RunFilesError(f"-o {output} exists and {not_ours}: choose another name, or "
                            f"remove it first")


# --------------------------------------------------------------------------- signals

# Signals whose default action kills the process on the spot, leaving behind whatever it was
# writing: while a command holds files (the run's lock, a temporary), they exit through Python.
ENDING_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP")
                       if hasattr(signal, name))


@contextmanager
def signals_exit():
    """For the duration of the block, SIGTERM and SIGHUP raise SystemExit(128 + signal)
    instead of killing the process outright, so that ``finally`` blocks run: temporaries are
    removed, the lock released. A signal that already has a handler (training's, which saves
    first) or is ignored (``nohup``) is left as it is. SIGINT needs nothing: Python raises
    KeyboardInterrupt for it already."""
    def leave(number, frame):
        raise SystemExit(128 + number)
    previous = {}
    try:
        for number in ENDING_SIGNALS:
            if signal.getsignal(number) is signal.SIG_DFL:
                previous[number] = signal.signal(number, leave)
    except ValueError:   # not the main thread: signals cannot be handled here
        pass
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


# --------------------------------------------------------------------------- atomic writes

def _new_file_mode(path: str) -> int:
    """The permission bits a plain open(path, "w") would leave: an existing file keeps its
    own, a new one gets 0o666 minus the umask."""
    try:
        info = os.stat(path)
        if stat.S_ISREG(info.st_mode):
            return stat.S_IMODE(info.st_mode) & 0o777
    except OSError:
        pass
    # The umask can only be read by setting it; charrnn writes no files from other threads.
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_file(path: str, mode: str, **open_options):
    """Open a temporary file beside ``path`` for writing; when the block ends without an
    error, flush it to disk and rename it over ``path`` (os.replace, atomic within a folder).

    A symlink at ``path`` is followed: its target is replaced and the link stays. The file
    gets the mode a plain open() would give (not the temporary's 0600). If the block or the write
    fails, or SIGINT, SIGTERM or SIGHUP arrives (see signals_exit), the temporary is removed
    and ``path`` is untouched; the OSError (or KeyboardInterrupt, SystemExit) propagates. A
    ``path`` that names a folder (see names_folder) is an IsADirectoryError, before anything
    is written. Temporaries are named ``.<name>.<random>.tmp`` and locked while in use, so that
    those of a killed writer are told apart and removed here (see remove_stale_temporaries).
    """
    path = os.fspath(path)
    if names_folder(path):   # (realpath would drop a trailing "/" and write a file there)
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    path = os.path.realpath(path)
    directory = os.path.dirname(path)
    permissions = _new_file_mode(path)
    remove_stale_temporaries(path)
    temporary = held = None
    with signals_exit():
        try:
            while True:   # (mkstemp, but with the name known before the file exists, so that
                # a signal arriving just after its creation still finds it to remove)
                temporary = os.path.join(
                    directory, f".{os.path.basename(path)}.{secrets.token_hex(8)}.tmp")
                try:
                    descriptor = _create_new(temporary)
                    break
                except FileExistsError:   # someone else's: not ours to remove
                    temporary = None
            held = _hold(descriptor)
            if hasattr(os, "fchmod"):   # before the rename: the file is never seen as 0600
                os.fchmod(descriptor, permissions)
            with os.fdopen(descriptor, mode, **open_options) as f:
                try:
                    yield f
                    f.flush()
                except UnicodeEncodeError as error:   # the file's fault, not stdout's: say so
                    raise _unencodable(error, path) from None
                os.fsync(f.fileno())
            os.replace(temporary, path)
            temporary = None
            _fsync_directory(directory)
        finally:
            if temporary is not None and os.path.lexists(temporary):
                os.unlink(temporary)
            if held is not None:
                os.close(held)


def _create_new(name: str) -> int:
    """Create the file ``name`` for writing, only if it does not exist (FileExistsError)."""
    return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                   0o600)


def _unencodable(error: UnicodeEncodeError, path: str) -> OSError:
    """An OSError naming ``path`` for a character its encoding cannot hold, so that every
    writer's "cannot write FILE: ..." names the file (a UnicodeEncodeError left alone would
    be taken for stdout's, as print's are)."""
    char = error.object[error.start:error.end][:1]
    what = " (a lone surrogate)" if "\ud800" <= char <= "\udfff" else ""
    return OSError(errno.EILSEQ, f"{error.encoding} cannot encode {char!r} "
                                 f"(U+{ord(char):04X}){what}", path)


def _hold(descriptor: int) -> int | None:
    """Lock the temporary open as ``descriptor`` (flock, through a duplicate that stays open
    until the rename), so that remove_stale_temporaries leaves it alone; the kernel drops the
    lock when the process dies, however it dies. Returns the duplicate (None without fcntl)."""
    if fcntl is None:
        return None
    held = os.dup(descriptor)
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)   # a new file: nobody else holds it
    return held


STALE_AFTER_SECONDS = 5.0   # a temporary unlocked and untouched this long is a dead writer's


def remove_stale_temporaries(path, min_age: float = STALE_AFTER_SECONDS) -> None:
    """Delete temporary files that a killed write of ``path`` left behind.

    They are never mistaken for the file itself (their names end in .tmp), but they take
    space. A temporary is stale when no process holds its lock (atomic_file locks each while
    writing it) and it has not been touched for ``min_age`` seconds (the moment between its
    creation and its lock; 0 is safe under the run's lock, where nobody else writes). Without
    fcntl, only its age can tell: an hour.
    """
    path = os.path.realpath(os.fspath(path))
    directory = os.path.dirname(path)
    prefix = f".{os.path.basename(path)}."
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if name.startswith(prefix) and name.endswith(".tmp"):
            _remove_if_stale(os.path.join(directory, name),
                             min_age if fcntl is not None else max(min_age, 3600.0))


def _remove_if_stale(temporary: str, min_age: float) -> None:
    try:
        descriptor = os.open(temporary, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
                             | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            return
        if fcntl is not None:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return   # its writer is alive
        if time.time() - os.fstat(descriptor).st_mtime < min_age:
            return
        os.unlink(temporary)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable (where the platform allows opening a directory)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


# --------------------------------------------------------------------------- the lock

class RunLock:
    """The lock that keeps two trainings from writing one checkpoint at once.

    fcntl.flock on ``.<name>.lock`` rather than a lock made with O_CREAT|O_EXCL: the kernel
    drops a flock when its process dies, even by SIGKILL, so a lock left by a crash is
    recognised for certain (nobody holds it) and a recycled PID cannot make it look alive.
    The file holds "PID host" for the message the other process shows, and is removed on
    release. (On a platform without fcntl, training runs unlocked.)
    """

    def __init__(self, checkpoint_path: str, note=None):
        self.checkpoint_path = checkpoint_path
        self.path = lock_path(checkpoint_path)
        # The name shown to the user: beside the checkpoint as they named it, unless that is a link.
        self.shown = self.path if os.path.islink(checkpoint_path) else os.path.join(
            os.path.dirname(checkpoint_path), f".{os.path.basename(checkpoint_path)}.lock")
        self.note = note or (lambda message: None)
        self.descriptor: int | None = None
        self._opened: int | None = None   # the descriptor of an attempt under way

    def acquire(self) -> None:
        """Take the lock, or raise RunFilesError naming the process that holds it."""
        try:
            import fcntl
        except ImportError:
            return
        for _ in range(100):
            self._opened = None
            try:
                descriptor = self._take(fcntl)
            except (KeyboardInterrupt, SystemExit):
                self._abandon(fcntl)
                raise
            if descriptor is not None:
                self.descriptor = descriptor
                return
        raise RunFilesError(f"cannot take the lock {self.shown}: it keeps changing")

    def _take(self, fcntl) -> int | None:
        """One attempt: the locked descriptor, or None if the file changed under us."""
        try:
            self._opened = descriptor = os.open(
                self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as error:
            raise RunFilesError(f"cannot create the lock file {self.shown}: "
                                f"{error.strerror or error}") from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_holder(descriptor)
            os.close(descriptor)
            raise RunFilesError(
                f"{self.checkpoint_path} is being trained by another charrnn "
                f"({holder or 'a process'}, lock {self.shown}); wait for it to finish, "
                f"or choose another --checkpoint") from None
        # The holder before us may have removed the file between our open and our flock:
        # then we hold a lock on a file nobody else will see. Try again on the new one.
        if not _same_inode(self.path, descriptor):
            os.close(descriptor)
            return None
        previous = _read_holder(descriptor)
        if previous:
            self.note(f"note: took over the lock {self.shown} left by {previous}, "
                      f"which is no longer running")
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        return descriptor

    def _abandon(self, fcntl) -> None:
        """After a signal interrupted _take: remove the lock file if it is empty or ours, and
        only while holding it (see release), so that no other run's lock is ever removed."""
        descriptor, self._opened = self._opened, None
        if descriptor is None:   # interrupted before os.open's result was stored
            try:
                descriptor = os.open(self.path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
            except OSError:
                return
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            words = os.pread(descriptor, 200, 0).split()
            if _same_inode(self.path, descriptor) and words[:1] in ([], [str(os.getpid()).encode()]):
                os.unlink(self.path)
        except OSError:
            pass
        finally:
            os.close(descriptor)

    def release(self) -> None:
        """Remove the lock file and let go of the lock (a no-op if not held)."""
        if self.descriptor is None:
            return
        try:
            os.unlink(self.path)   # while still holding it, so nobody takes a doomed file
        except OSError:
            pass
        os.close(self.descriptor)
        self.descriptor = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _same_inode(path: str, descriptor: int) -> bool:
    try:
        on_disk, held = os.stat(path), os.fstat(descriptor)
    except OSError:
        return False
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


def _read_holder(descriptor: int) -> str:
    """"process 1234 on host" from a lock file's "1234 host" (empty if it holds nothing)."""
    try:
        words = os.pread(descriptor, 200, 0).decode("utf-8", "replace").split()
    except OSError:
        return ""
    if not words:
        return ""
    here = socket.gethostname()
    host = f" on {words[1]}" if len(words) > 1 and words[1] != here else ""
    return f"process {words[0]}{host}"


# --------------------------------------------------------------------------- checks and claims

def run_files(checkpoint_path: str) -> list[tuple[str, str]]:
    """The files a run at ``checkpoint_path`` writes, with what each is."""
    return [(checkpoint_path, "checkpoint"), (best_path(checkpoint_path), "best model"),
            (history_path(checkpoint_path), "history")]


def check_start(checkpoint_path: str, text_file, resume: bool, force: bool) -> None:
    """Refuse, before anything is written, a run that would lose or misuse a user's file.

    - the text must not be one of the run's files (same device and inode);
    - a new model needs a free name: an existing checkpoint needs --resume or --force, and a
      best twin or history without its checkpoint is never deleted, not even with --force
      (it may be the only copy of a model);
    - --force replaces only a charrnn checkpoint, and whatever twins it removes must be
      charrnn's own (a best model that is a checkpoint, a history with charrnn's header).
    """
    for path, what in run_files(checkpoint_path):
        for text in _texts(text_file):
            if same_file(text, path):
                raise RunFilesError(f"{text} is the text to train on, and also this run's "
                                    f"{what} {path}: training would overwrite it; choose "
                                    f"another --checkpoint")
    if os.path.isdir(checkpoint_path):
        raise RunFilesError(f"{checkpoint_path} is a directory; give --checkpoint a file name "
                            f"ending in .npz")
    kind = not_a_regular_file(checkpoint_path)
    if kind:
        raise RunFilesError(f"{checkpoint_path} is {kind}, not a checkpoint file; give "
                            f"--checkpoint a file name ending in .npz")
    exists = os.path.exists(checkpoint_path)
    if exists and not resume and not is_charrnn_checkpoint(checkpoint_path):
        raise RunFilesError(f"{checkpoint_path} exists and is not a charrnn checkpoint; charrnn "
                            f"will not replace it: choose another --checkpoint")
    if exists and not (resume or force):
        raise RunFilesError(f"{checkpoint_path} already exists: pass --resume to continue "
                            f"training it, or --force to overwrite it with a new model")
    if resume and not exists:
        raise RunFilesError(f"cannot resume: no checkpoint at {checkpoint_path}")
    best, history = best_path(checkpoint_path), history_path(checkpoint_path)
    if not exists:
        orphans = [path for path in (best, history) if os.path.lexists(path)]
        if orphans:
            copy = (f"; to continue training the best model, copy it back "
                    f"(cp {best} {checkpoint_path}) and --resume" if best in orphans else "")
            raise RunFilesError(
                f"{' and '.join(orphans)} {'exist' if len(orphans) > 1 else 'exists'} without "
                f"{checkpoint_path}, and a new model would replace {'them' if len(orphans) > 1 else 'it'}: "
                f"move {'them' if len(orphans) > 1 else 'it'} away or choose another "
                f"--checkpoint{copy}")
        return
    for path, ours, what in ((best, is_charrnn_checkpoint, "a charrnn checkpoint"),
                             (history, is_charrnn_history, "a charrnn history")):
        if os.path.lexists(path) and not ours(path):
            raise RunFilesError(f"{path} is not {what}, and this run would "
                                f"{'remove' if force else 'replace'} it: move it away or "
                                f"choose another --checkpoint")


def preflight(checkpoint_path: str) -> None:
    """Check, before the first iteration, that every file the run writes can be written:
    no folder or special file in the way, no read-only or immutable file, and a temporary
    can be created in each folder. Raises RunFilesError."""
    probed = set()
    for path, what in run_files(checkpoint_path):
        real = os.path.realpath(path)
        if os.path.lexists(real):
            kind = not_a_regular_file(real)
            if kind:
                raise RunFilesError(f"cannot write the {what} {path}: it is {kind}; move it "
                                    f"away or choose another --checkpoint")
            if not os.access(real, os.W_OK):
                raise RunFilesError(f"cannot write the {what} {path}: the file is read-only "
                                    f"or immutable; make it writable or choose another "
                                    f"--checkpoint")
        folder = os.path.dirname(real)
        if folder in probed:
            continue
        try:
            descriptor, probe = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(real)}.",
                                                 suffix=".tmp")
            os.close(descriptor)
            os.unlink(probe)
        except OSError as error:
            raise RunFilesError(f"cannot write checkpoints in {folder}: "
                                f"{error.strerror or error}") from None
        probed.add(folder)


def _make_folder(checkpoint_path: str, created: list[str]) -> None:
    """Create the checkpoint's folder if needed, listing in ``created`` the folders it makes,
    deepest first (before making them: a signal on the way must not hide one)."""
    try:
        folder = os.path.dirname(os.path.realpath(checkpoint_path))
    except OSError as error:   # e.g. the current folder was deleted
        raise RunFilesError(f"cannot find the folder of {checkpoint_path}: "
                            f"{error.strerror or error}") from None
    missing = []
    parent = folder
    while parent and not os.path.exists(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    if parent and not os.path.isdir(parent):
        raise RunFilesError(f"cannot write checkpoints in {folder}: {parent} is a file, "
                            f"not a folder")
    created.extend(missing)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise RunFilesError(f"cannot write checkpoints in {folder}: "
                            f"{error.strerror or error}") from None


@contextmanager
def claimed_run(checkpoint_path: str, text_file, resume: bool, force: bool, note=None):
    """Claim the files of a run for the duration of the block.

    Checks check_start() before touching anything, then creates the folder, takes the lock
    and checks again (another process may have changed the files meanwhile). On leaving the
    block, however it is left, releases the lock and removes the folders it created if they
    are still empty.
    """
    check_current_folder(checkpoint_path, *_texts(text_file))
    check_start(checkpoint_path, text_file, resume, force)
    created: list[str] = []
    # SIGTERM and SIGHUP, until training takes them over, end the command through the
    # finally blocks below, whenever they come: nothing of the claim is left behind.
    with signals_exit():
        try:
            _make_folder(checkpoint_path, created)
            with RunLock(checkpoint_path, note):
                check_start(checkpoint_path, text_file, resume, force)
                yield
        finally:
            for folder in created:
                try:
                    os.rmdir(folder)
                except OSError:
                    pass


def prepare_run(checkpoint_path: str, replacing: bool, note=None) -> None:
    """Last steps before the first iteration, under the lock: preflight(), remove temporaries
    that killed saves left, and, if ``replacing`` an existing model (--force), remove its best
    twin and history (checked to be charrnn's by check_start), so that they cannot be taken
    for the new model's."""
    note = note or (lambda message: None)
    preflight(checkpoint_path)
    for path, _ in run_files(checkpoint_path):
        remove_stale_temporaries(path, min_age=0)   # under the lock: no other writer
    if not replacing:
        return
    for path in (best_path(checkpoint_path), history_path(checkpoint_path)):
        if os.path.isfile(path):
            try:
                os.unlink(path)
            except OSError as error:
                raise RunFilesError(f"cannot remove {path}, which belongs to the model being "
                                    f"replaced: {error.strerror or error}") from None
            note(f"note: removed {path}, which belonged to the model being replaced")


def check_outside_corpus(checkpoint_path: str, corpus_paths) -> None:
    """Raise RunFilesError if the checkpoint (and so its twins and history) would be written
    inside one of the corpus's folders: a run must not write into the text it reads."""
    for path in corpus_paths:
        if not os.path.isdir(path):
            continue
        try:
            folder = os.path.realpath(os.path.dirname(os.path.abspath(checkpoint_path)))
            corpus = os.path.realpath(path)
        except OSError:   # the current folder is gone: claimed_run says so
            return
        if folder == corpus or folder.startswith(corpus.rstrip(os.sep) + os.sep):
            raise RunFilesError(f"{checkpoint_path} is inside the corpus folder {path}; give "
                                f"--checkpoint a path outside it")
