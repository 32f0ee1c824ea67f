"""A short run of tests/kill_test.py: SIGKILL a training subprocess at random moments (issue 4).

The full run (``python tests/kill_test.py --kills 25``) takes about half a minute; here 5 kills
keep the suite fast. See kill_test.py for what is checked after every kill.
"""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kill_test  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def test_checkpoint_survives_sigkill_and_resumes(tmp_path):
    report = kill_test.run_kill_test(kills=5, seed=1, workdir=str(tmp_path), log=lambda m: None)
    assert report.problems == []
    assert report.kills == 5
    assert max(report.iterations, default=0) > 0, "no kill came after the first checkpoint"
    assert report.final_iteration == max(report.iterations) + kill_test.FINAL_EXTRA_ITERATIONS


def test_a_broken_checkpoint_would_be_noticed(tmp_path):
    """The checker itself: a truncated checkpoint in the folder is reported as a problem."""
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (tmp_path / kill_test.CHECKPOINT).write_bytes(b"PK\x03\x04 half a file")
    (folder / ".text.npz.tmp.npz").write_bytes(b"")
    report = kill_test.Report()
    kill_test.check_folder(str(tmp_path), report, 1, set())
    assert len(report.problems) == 2
    assert "does not load" in report.problems[0]
    assert "looks like a checkpoint" in report.problems[1]
