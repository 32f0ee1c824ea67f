"""Where a sample's prompt comes from: a file (``--seed-file``) or standard input
(``--seed -``), read as text in the model's encoding. Errors are PromptError, one line each."""
from __future__ import annotations

import os

from .data import BYTE_ORDER_MARK, text_encoding
from .runfiles import not_a_regular_file

MAX_PROMPT_BYTES = 1 << 26   # 64 MiB: a prompt is fed a character at a time; more is a mistake


class PromptError(ValueError):
    """The prompt cannot be read or is not text; the message says why in one line."""


def decode_prompt(data: bytes, name: str, encoding: str) -> str:
    """``data`` as text: refused if it holds NUL bytes (binary) or cannot be decoded; a
    leading byte-order mark is left out, as in a training text."""
    if b"\x00" in data:
        raise PromptError(f"{name} looks like a binary file (it contains NUL bytes), not text")
    try:
        text = data.decode(text_encoding(encoding))
    except UnicodeDecodeError as error:
        raise PromptError(f"{name} is not valid {encoding} text: undecodable byte at offset "
                          f"{error.start} ({error.reason})") from None
    except (UnicodeError, ValueError) as error:   # codecs that refuse in other ways
        raise PromptError(f"{name} cannot be decoded as {encoding} text ({error})") from None
    return text[1:] if text.startswith(BYTE_ORDER_MARK) else text


def read_prompt_file(path: str, encoding: str) -> str:
    """The text of the prompt file at ``path``."""
    if not os.path.exists(path):
        raise PromptError(f"no such file: {path}")
    kind = not_a_regular_file(path)
    if kind == "a directory":
        raise PromptError(f"{path} is a directory, not a text file")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PROMPT_BYTES + 1)
    except OSError as error:
        raise PromptError(f"cannot read {path}: {error.strerror or error}") from None
    if len(data) > MAX_PROMPT_BYTES:
        raise PromptError(f"{path} is larger than {MAX_PROMPT_BYTES >> 20} MiB: too long for a "
                          f"prompt")
    return decode_prompt(data, path, encoding)


def read_prompt_stream(stream, encoding: str) -> str:
    """The prompt given on standard input (``stream``: its binary buffer), to its end."""
    try:
        data = stream.read(MAX_PROMPT_BYTES + 1)
    except OSError as error:
        raise PromptError(f"cannot read standard input: {error.strerror or error}") from None
    if len(data) > MAX_PROMPT_BYTES:
        raise PromptError(f"standard input holds more than {MAX_PROMPT_BYTES >> 20} MiB: too "
                          f"long for a prompt")
    return decode_prompt(data, "standard input", encoding)
