"""Load a `charrnn viz` page in headless Chromium: report its size and load time, and save a
screenshot.

    python benchmarks/viz_screenshot.py PAGE.html [-o shot.png] [--query 'char=120&unit=l1.c:45']
                                        [--window-size 1400,1500] [--runs 5]

Installs nothing: it needs Chromium already installed (on Debian or Ubuntu,
``apt-get install chromium``; give another binary with --chromium). Each run is a fresh
headless browser with its own empty profile, no network services, no GPU.

Load time is what the page itself records: when its script has finished (the text views built,
a unit coloured, the pre-selected character shown), it writes ``performance.now()``, the
milliseconds since navigation began, to ``<html data-load-ms>`` (and the part spent in its
script to ``data-script-ms``); this reads them from the DOM that ``--dump-dom`` prints. The figure is the median over --runs fresh browsers (the first
load of a file is usually slower). Wall-clock time per browser, start-up included, is shown
too. The screenshot is taken last, with the same query (e.g. a pinned character, a unit).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-default-apps", "--hide-scrollbars", "--mute-audio"]


def find_chromium(given: str | None) -> str | None:
    for candidate in ([given] if given else ["/usr/bin/chromium", "chromium",
                                             "chromium-browser", "google-chrome"]):
        path = shutil.which(candidate) or (candidate if os.path.isfile(candidate) else None)
        if path:
            return path
    return None


def page_url(page: Path, query: str) -> str:
    url = page.resolve().as_uri()
    return f"{url}?{query}" if query else url


def run_chromium(chromium: str, url: str, *flags: str, timeout: float = 120
                 ) -> subprocess.CompletedProcess:
    """One fresh headless browser on ``url`` with its own throw-away profile."""
    with tempfile.TemporaryDirectory(prefix="charrnn-viz-chromium-") as profile:
        return subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *flags, url],
                              capture_output=True, text=True, timeout=timeout)


def dump_dom(chromium: str, url: str) -> tuple[str, str]:
    """(DOM after load, browser stderr)."""
    done = run_chromium(chromium, url, "--enable-logging=stderr", "--v=0", "--dump-dom")
    if done.returncode != 0:
        raise RuntimeError(f"chromium failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return done.stdout, done.stderr


def ready_attributes(dom: str) -> dict[str, str]:
    """The data-* attributes the page's script writes on <html>."""
    match = re.search(r"<html\b[^>]*>", dom)
    return dict(re.findall(r'(data-[a-z-]+)="([^"]*)"', match.group(0))) if match else {}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", type=Path, help="a page written by charrnn viz")
    parser.add_argument("-o", "--output", type=Path, help="where to save the screenshot (PNG)")
    parser.add_argument("--query", default="", help="query string for the page, e.g. "
                        "'char=120&unit=l1.c:45' (pin character 120, show unit 45 of l1.c)")
    parser.add_argument("--window-size", default="1400,1500", help="W,H in pixels")
    parser.add_argument("--runs", type=int, default=5, help="fresh browsers to time")
    parser.add_argument("--chromium", help="the browser binary [default: /usr/bin/chromium]")
    args = parser.parse_args(argv)
    if not args.page.is_file():
        print(f"error: no page at {args.page}", file=sys.stderr)
        return 1
    chromium = find_chromium(args.chromium)
    if chromium is None:
        print("error: no Chromium found; install it (apt-get install chromium) or pass "
              "--chromium PATH", file=sys.stderr)
        return 1
    url = page_url(args.page, args.query)
    size = args.page.stat().st_size
    print(f"page:       {args.page} ({size:,} bytes, {size / 1e6:.2f} MB)")
    print(f"browser:    {chromium}")
    loads, scripts, walls = [], [], []
    for _ in range(max(args.runs, 1)):
        start = time.perf_counter()
        dom, log = dump_dom(chromium, url)
        walls.append(time.perf_counter() - start)
        marks = ready_attributes(dom)
        if "data-viz-error" in marks or marks.get("data-viz-ready") != "1":
            print(f"error: the page's script did not finish: {marks}", file=sys.stderr)
            return 1
        if "Uncaught" in log:
            print(f"error: console errors:\n{log}", file=sys.stderr)
            return 1
        loads.append(float(marks["data-load-ms"]))
        scripts.append(float(marks["data-script-ms"]))
    print(f"load time:  {statistics.median(loads):.0f} ms median from navigation to the page's "
          f"script done; runs: {', '.join(f'{x:.0f}' for x in loads)} ms")
    print(f"script:     {statistics.median(scripts):.0f} ms median of that in the page's script "
          f"(decoding the data, building and colouring the text)")
    print(f"browser:    {statistics.median(walls):.2f} s median wall time per run, start-up "
          f"included")
    if args.output:
        done = run_chromium(chromium, url, f"--window-size={args.window_size}",
                            f"--screenshot={args.output.resolve()}")
        if done.returncode != 0 or not args.output.is_file():
            print(f"error: no screenshot: {done.stderr.strip()[-500:]}", file=sys.stderr)
            return 1
        print(f"screenshot: {args.output} ({args.output.stat().st_size:,} bytes, "
              f"window {args.window_size})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
