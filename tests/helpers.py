"""Helpers shared by the test modules (fixtures live in conftest.py)."""
import signal


def with_sigint_default():
    """``preexec_fn`` for a subprocess that must take SIGINT as a terminal's foreground
    process does, even when the suite itself runs with SIGINT ignored (started in the
    background)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
