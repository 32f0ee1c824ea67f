"""A look inside a model: what it predicts and what its units do at every character of a text.

The maths behind ``charrnn viz``, over NumPy arrays only (no files, no HTML; viz.py writes the
page). ``inspect_text`` runs ``Network.trace`` over a text from a zero state, the state carried
through, and gathers:

- for every character after the first, the probability the model gave it and its surprise,
  ``-log2 p(char | all before it)``, and the model's top guesses with their probabilities;
- every unit's value after each character (h, and for gated cells c and the gates), by the
  names ``trace`` gives (``l1.h``, ``l1.c``, ``l1.f``, ...), each with the range its cell
  declares (Network.value_ranges): [0, 1] (a sigmoid gate), [-1, 1] (tanh), or unbounded (c);
- simple features of the text at each character (inside quotes, position in the line, start
  of a word, ...) and the units whose values correlate best with each (Pearson's r);
- for the [0, 1] gates, how often each unit is saturated: the fraction of characters at which
  it is below 0.1 and the fraction above 0.9 (Karpathy, Johnson and Fei-Fei, 2015, fig. 3);
- the text's score as ``charrnn eval`` computes it (evaluate.score_text), and the exact
  per-character cross-entropy of the trace, which differ when score_text cuts the text into
  several streams.

Alignment: with N characters, row t of every (N-1, ...) array belongs to step t, which reads
character t; its prediction is for character t + 1, and its unit values are those after
reading character t.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .evaluate import Score, score_text
from .model import Network, ParamSet

TOP_K = 5
SATURATED_LOW, SATURATED_HIGH = 0.1, 0.9
UNITS_PER_FEATURE = 3   # how many of the best units each feature lists
QUOTES = '"\u201c\u201d'
OPENING, CLOSING = "([{", ")]}"

# What each feature means, for the page; the order is the order they are shown in.
FEATURES = {
    "inside quotes": "1 between an opening and a closing double quote, else 0",
    "inside brackets": "1 inside (), [] or {}, else 0",
    "position in line": "characters since the last newline",
    "newline": "1 on a newline, else 0",
    "start of word": "1 on a letter that follows a non-letter, else 0",
    "in a word": "1 on a letter, else 0",
    "position in word": "letters since the last non-letter (0 off words)",
    "space": "1 on a space, else 0",
    "upper case": "1 on an upper-case letter, else 0",
    "digit": "1 on a digit, else 0",
    "punctuation": "1 on anything but a letter, digit or white space, else 0",
    "indentation": "1 on the white space that starts a line, else 0",
}


@dataclass
class UnitValues:
    """One of trace's arrays: ``values`` (N-1, H), and the range its values lie in, as its cell
    declares it: ``"unit"`` within [0, 1], ``"signed"`` within [-1, 1], ``"free"`` beyond."""
    name: str
    values: np.ndarray
    range: str

    @property
    def layer(self) -> int:
        """1 for ``l1.h``."""
        return int(self.name.split(".", 1)[0][1:])

    @property
    def kind(self) -> str:
        """``h`` for ``l1.h``."""
        return self.name.split(".", 1)[1]


@dataclass
class Correlation:
    feature: str
    name: str      # the array, e.g. "l1.c"
    unit: int
    r: float


@dataclass
class Inspection:
    """Everything ``charrnn viz`` shows of one text (see the module docstring)."""
    indices: np.ndarray          # (N,) the text
    p_true: np.ndarray           # (N-1,) float64: p(character t+1 | characters 0..t)
    top_indices: np.ndarray      # (N-1, k) the k likeliest next characters, likeliest first
    top_probs: np.ndarray        # (N-1, k) their probabilities
    units: list[UnitValues]
    features: dict[str, np.ndarray]           # name -> (N-1,) float64
    correlations: list[Correlation]           # the best units of each feature, by |r|
    saturation: dict[str, tuple[np.ndarray, np.ndarray]]   # name -> (below 0.1, above 0.9), (H,)
    score: Score                 # as evaluate.score_text (and so charrnn eval) scores the text
    trace_score: Score = field(default=None)  # every character after the first, one stream

    @property
    def surprise_bits(self) -> np.ndarray:
        """(N-1,) ``-log2 p`` of each character after the first."""
        with np.errstate(divide="ignore"):
            return -np.log2(self.p_true)


def top_guesses(probs: np.ndarray, k: int = TOP_K) -> tuple[np.ndarray, np.ndarray]:
    """The k largest of each row of ``probs`` (M, V), largest first: (indices, probabilities),
    each (M, min(k, V)). Ties go to the lower index."""
    k = min(k, probs.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(probs, order, axis=1)


def text_features(text: str) -> dict[str, np.ndarray]:
    """FEATURES of every character of ``text`` but the last (the characters a step reads),
    each (len(text) - 1,) float64; the state a feature follows (quotes, brackets, line) is
    the state after reading the character."""
    n = max(len(text) - 1, 0)
    out = {name: np.zeros(n) for name in FEATURES}
    quoted = False
    depth = column = word = 0
    line_start = True   # only white space so far on this line
    previous_letter = False
    for t in range(n):
        char = text[t]
        letter = char.isalpha()
        if char in QUOTES:
            # Curly quotes say which way they go; a straight one toggles.
            quoted = (char == "\u201c") or (char == '"' and not quoted)
        elif char in OPENING:
            depth += 1
        elif char in CLOSING:
            depth = max(depth - 1, 0)
        out["inside quotes"][t] = quoted
        out["inside brackets"][t] = depth > 0
        out["position in line"][t] = column
        out["newline"][t] = char == "\n"
        out["start of word"][t] = letter and not previous_letter
        out["in a word"][t] = letter
        word = word + 1 if letter else 0
        out["position in word"][t] = word
        out["space"][t] = char == " "
        out["upper case"][t] = char.isupper()
        out["digit"][t] = char.isdigit()
        out["punctuation"][t] = not (char.isalnum() or char.isspace())
        line_start = line_start and char.isspace() and char != "\n"
        out["indentation"][t] = line_start
        if char == "\n":
            column, line_start = 0, True
        else:
            column += 1
        previous_letter = letter
    return out


def correlate(units: list[UnitValues], features: dict[str, np.ndarray],
              per_feature: int = UNITS_PER_FEATURE) -> list[Correlation]:
    """For each feature that varies, the ``per_feature`` units (of all arrays) whose values
    correlate most strongly with it (Pearson's r, by |r|); all of them sorted by |r|, largest
    first. Units that never change have no correlation and are left out."""
    names = [name for name, values in features.items() if len(values) > 1 and values.std() > 0]
    if not names or not units:
        return []
    F = np.stack([features[name] for name in names], axis=1)            # (M, F)
    F = (F - F.mean(axis=0)) / F.std(axis=0)
    candidates = {feature: [] for feature in names}
    for unit_values in units:                  # one array at a time: (M, H) float64 at most
        X = unit_values.values.astype(np.float64)
        std = X.std(axis=0)
        varies = std > 1e-12 * np.maximum(np.abs(X).max(axis=0), 1e-300)
        Z = np.zeros_like(X)
        Z[:, varies] = (X[:, varies] - X[:, varies].mean(axis=0)) / std[varies]
        r = np.clip(Z.T @ F / len(F), -1.0, 1.0)                          # (H, F)
        for j, feature in enumerate(names):
            strength = np.where(varies, np.abs(r[:, j]), -1.0)
            for unit in np.argsort(-strength, kind="stable")[:per_feature]:
                if strength[unit] >= 0:
                    candidates[feature].append(
                        Correlation(feature, unit_values.name, int(unit), float(r[unit, j])))
    found = []
    for feature in names:   # the strongest of each feature (the first array's on a tie)
        found += sorted(candidates[feature], key=lambda c: -abs(c.r))[:per_feature]
    found.sort(key=lambda c: -abs(c.r))
    return found


def gate_saturation(values: np.ndarray, low: float = SATURATED_LOW, high: float = SATURATED_HIGH
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per unit of ``values`` (M, H): the fraction of steps below ``low`` and above ``high``."""
    if len(values) == 0:
        return np.zeros(values.shape[1]), np.zeros(values.shape[1])
    return (values < low).mean(axis=0), (values > high).mean(axis=0)


def inspect_text(network: Network, params: ParamSet, indices: np.ndarray, text: str,
                 k: int = TOP_K) -> Inspection:
    """Run the model over ``indices`` (N,), whose characters are ``text``, and gather what
    the page shows (see Inspection)."""
    indices = np.asarray(indices)
    if len(text) != len(indices):
        raise ValueError(f"text has {len(text)} characters, indices {len(indices)}")
    probs, values = network.trace(params, indices)
    steps = len(probs)
    p_true = probs[np.arange(steps), indices[1:]] if steps else np.zeros(0)
    top_indices, top_probs = top_guesses(probs, k)
    ranges = network.value_ranges()
    units = [UnitValues(name, array, ranges[name]) for name, array in values.items()]
    features = text_features(text)
    saturation = {u.name: gate_saturation(u.values) for u in units if u.range == "unit"}
    with np.errstate(divide="ignore"):
        trace_total = float(-np.log(p_true).sum())
    return Inspection(
        indices=indices, p_true=p_true, top_indices=top_indices, top_probs=top_probs,
        units=units, features=features, correlations=correlate(units, features),
        saturation=saturation, score=score_text(network, params, indices),
        trace_score=Score(trace_total, steps))


def same_figure(a: Score, b: Score, digits: int = 4) -> bool:
    """True when two scores count the same characters and show the same bits/char."""
    if a.count != b.count:
        return False
    if a.count == 0:
        return True
    return f"{a.bits_per_char:.{digits}f}" == f"{b.bits_per_char:.{digits}f}" and math.isfinite(
        a.bits_per_char)
