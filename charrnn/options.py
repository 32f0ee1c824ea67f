"""The command line's value types: what an option accepts, refused with click's one-line
usage error otherwise (click's own FloatRange lets NaN and infinity through)."""
from __future__ import annotations

import math
import re

import click


class Duration(click.ParamType):
    """A length of time, ``90s``, ``5m``, ``1h30m`` or ``1.5h``, in seconds (more than 0)."""
    name = "duration"
    PATTERN = re.compile(r"(?:(\d+(?:\.\d*)?)h)?(?:(\d+(?:\.\d*)?)m)?(?:(\d+(?:\.\d*)?)s)?")

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            return float(value)
        text = str(value).strip().lower()
        match = self.PATTERN.fullmatch(text)
        if not text or match is None or not any(match.groups()):
            self.fail(f"{value!r} is not a duration: give a number with a unit, e.g. 90s, 5m, "
                      f"1h30m.", param, ctx)
        hours, minutes, seconds = (float(part) if part else 0.0 for part in match.groups())
        total = hours * 3600 + minutes * 60 + seconds
        if not (math.isfinite(total) and total > 0):
            self.fail(f"{value!r} is not a duration longer than 0.", param, ctx)
        return total


class CheckedFloat(click.ParamType):
    """A number that ``accepts`` must let through, or a one-line error saying it is not
    ``description``: click's FloatRange lets NaN (and inf) through, so these check it
    themselves."""
    name = "float"
    description = "a number"

    def accepts(self, number: float) -> bool:
        raise NotImplementedError

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not self.accepts(number):
            self.fail(f"{value!r} is not {self.description}.", param, ctx)
        return number


class PositiveFloat(CheckedFloat):
    """A finite number greater than 0."""
    description = "a finite number greater than 0"

    def accepts(self, number: float) -> bool:
        return math.isfinite(number) and number > 0


POSITIVE = PositiveFloat()


class Fraction(CheckedFloat):
    """A number from 0 to 1 (to just below 1 if ``below_one``)."""

    def __init__(self, below_one: bool = False):
        self.below_one = below_one
        self.description = f"a number in [0, {'1)' if below_one else '1]'}"

    def accepts(self, number: float) -> bool:
        return 0 <= number < 1 if self.below_one else 0 <= number <= 1


def range_help(text: str, default) -> str:
    return f"{text} [default: {default}]"


class Temperature(PositiveFloat):
    """A temperature: a finite number greater than 0; 0 points to --greedy."""

    def convert(self, value, param, ctx):
        if click.FLOAT.convert(value, param, ctx) == 0:
            self.fail("0 is not a temperature; for the most likely character every time, use "
                      "--greedy.", param, ctx)
        return super().convert(value, param, ctx)


class TopP(CheckedFloat):
    """A probability mass in (0, 1]."""
    description = "a number in (0, 1]"

    def accepts(self, number: float) -> bool:
        return 0 < number <= 1


class RepeatWords(click.ParamType):
    """The loop guard's N words: 0 (off) or at least 2."""
    name = "integer"

    def convert(self, value, param, ctx):
        number = click.INT.convert(value, param, ctx)
        if number != 0 and number < 2:
            self.fail(f"{value!r} is neither 0 (off) nor a run of 2 or more words.", param, ctx)
        return number


def nonempty_stops(ctx, param, values):
    if any(value == "" for value in values):
        raise click.BadParameter("an empty stop string would end every sample at once.",
                                 ctx, param)
    return tuple(values)
