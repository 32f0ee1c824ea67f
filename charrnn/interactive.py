"""``charrnn sample --interactive``: the model stays loaded, and each line typed (or piped) is
a prompt whose continuation is written at once. Ctrl-C stops the continuation being written,
not the session; the end of input (Ctrl-D) ends it."""
from __future__ import annotations

from collections.abc import Callable, Iterator

PROMPT_MARK = "> "


def prompt_lines(stdin, ask: Callable[[str], None] | None) -> Iterator[str]:
    """Yield the lines of ``stdin`` without their line endings, until its end.

    ``ask(PROMPT_MARK)`` is called before each line when given (at a terminal). Ctrl-C while a
    line is being typed drops that line and asks again.
    """
    while True:
        if ask is not None:
            ask(PROMPT_MARK)
        try:
            line = stdin.readline()
        except KeyboardInterrupt:
            if ask is not None:
                ask("\n")
            continue
        if not line:
            return
        yield line.rstrip("\r\n") if line.endswith("\n") else line


def run_session(lines: Iterator[str], respond: Callable[[str], None],
                report: Callable[[str], None], stopped: Callable[[], None]) -> int:
    """Call ``respond(line)`` for each line; return how many were answered in full.

    ``respond`` raises ValueError for a prompt it cannot continue: ``report(message)`` shows
    it and the session goes on. Ctrl-C during ``respond`` stops that continuation:
    ``stopped()`` closes its output, and the session goes on.
    """
    answered = 0
    for line in lines:
        try:
            respond(line)
        except ValueError as error:
            report(str(error))
            continue
        except KeyboardInterrupt:
            stopped()
            continue
        answered += 1
    return answered
