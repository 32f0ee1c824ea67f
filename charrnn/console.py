"""Stdout and stderr for the commands: the product on stdout, everything else on stderr.

``emit`` writes the product (generated text, reports) to stdout; a stdout that cannot take it
(closed, full, or unable to encode a character) becomes one StdoutError line. ``say`` writes a
message for the user to stderr, unless -q asked for errors only.
"""
from __future__ import annotations

import os
import sys

import click


def say(message: str) -> None:
    """A message for the user, on stderr (none with -q: only errors are shown then)."""
    context = click.get_current_context(silent=True)
    if context is None or not context.meta.get("charrnn.quiet"):
        click.echo(message, err=True)


def quiet_from_now(quiet: bool) -> None:
    """-q: from here on say() prints nothing; errors still do."""
    click.get_current_context().meta["charrnn.quiet"] = quiet


def is_quiet() -> bool:
    """True when -q is in force for the current command."""
    context = click.get_current_context(silent=True)
    return bool(context is not None and context.meta.get("charrnn.quiet"))


class StdoutError(click.ClickException):
    """Stdout cannot take the output: closed, full, or unable to encode a character."""


def stdout_error(error: BaseException | None) -> StdoutError:
    """A one-line StdoutError for a failed write to stdout (None: stdout is closed).

    Stdout is detached (see detach_stdout), so that the error is the only message."""
    detach_stdout()
    if isinstance(error, UnicodeEncodeError):
        char = error.object[error.start:error.end][:1]
        return StdoutError(
            f"stdout's encoding ({error.encoding}) cannot show {char!r} (U+{ord(char):04X}); "
            f"use a UTF-8 terminal, or set PYTHONIOENCODING=utf-8 (e.g. when writing to a file)")
    if error is None:
        return StdoutError("cannot write to stdout: it is closed")
    return StdoutError(f"cannot write to stdout: {error.strerror or error}")


def check_stdout_shows(text: str) -> None:
    """Raise StdoutError now, before any work, if stdout is closed or cannot encode ``text``."""
    out = sys.stdout
    if out is None:
        raise stdout_error(None)
    try:
        text.encode(out.encoding or "utf-8", out.errors or "strict")
    except UnicodeEncodeError as error:
        raise stdout_error(error) from None
    except LookupError:   # an encoding Python cannot name: let the write decide
        pass


def emit(text: str) -> None:
    """Print ``text`` and a newline on stdout, flushed; a failure is a one-line StdoutError."""
    if sys.stdout is None:
        raise stdout_error(None)
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except (OSError, UnicodeEncodeError) as error:
        raise stdout_error(error) from None


def detach_stdout() -> None:
    """Point file descriptor 1 at /dev/null, so that Python's last flush of what is still
    buffered cannot fail again (and print a warning) after the error has been reported."""
    try:
        fd = sys.stdout.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except (AttributeError, OSError, ValueError):   # no real stdout (closed, or a test's)
        pass


def write_stream(start: str, characters) -> None:
    """Write ``start``, then the characters as they come, then one newline, to stdout."""
    out = sys.stdout
    out.write(start)
    for i, char in enumerate(characters):
        out.write(char)
        if char == "\n" or i % 256 == 0:
            out.flush()   # stream the text as it comes
    out.write("\n")
    out.flush()
