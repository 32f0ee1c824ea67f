"""The files the pages are made of (charrnn/assets/: JavaScript and CSS), read from the
installed package with importlib.resources, so that they work from a wheel as from a checkout."""
from __future__ import annotations

import functools
from importlib import resources

ASSETS = "assets"


@functools.lru_cache(maxsize=None)
def asset_text(name: str) -> str:
    """The text of charrnn/assets/``name`` (UTF-8). It goes inside a <script> or <style>
    element as it is, so it must not hold ``</`` (which could close the element)."""
    text = resources.files("charrnn").joinpath(ASSETS, name).read_text(encoding="utf-8")
    if "</" in text:
        raise ValueError(f"charrnn/assets/{name} holds '</', which would end its element")
    return text


def page_css(*names: str) -> str:
    """common.css, then each of ``names`` (e.g. ``viz.css``), as one stylesheet."""
    return "\n" + "".join(asset_text(name) for name in ("common.css", *names))


def page_script(*names: str) -> str:
    """common.js, then each of ``names`` (e.g. ``viz.js``), as one script."""
    return "\n" + "".join(asset_text(name) for name in ("common.js", *names))
