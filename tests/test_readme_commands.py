"""README's two commands work on a fresh machine (issue 21).

The set-up part of each command (everything up to and including its ``pip install``) is taken
from README.md itself and run by ``sh`` in a copy of the project, in an environment as bare as a
fresh Debian's: ``PATH=/usr/bin:/bin``, no ``python`` (only the system's ``python3``, which
refuses ``pip install`` outside a virtual environment where it is externally managed, PEP 668),
an empty home. It must end with a working ``charrnn --version`` (and ``pytest``). Skipped where
there is no system ``/usr/bin/python3``. Needs the package index: this installs charrnn's
dependencies from scratch.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

import charrnn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYSTEM_PYTHON = "/usr/bin/python3"
PROJECT_FILES = ["setup.cfg", "pyproject.toml", "README.md", "charrnn"]


def readme_command(marker: str) -> str:
    """The one-line ``sh`` command between ``<!-- marker -->`` and ``<!-- /marker -->``."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    block = re.search(rf"<!-- {marker} -->\s*```sh\n(.*?)\n```\s*<!-- /{marker} -->", readme,
                      re.S)
    assert block, f"README.md has no {marker} block"
    lines = block.group(1).strip().splitlines()
    assert len(lines) == 1, "a README command is one line, to copy and paste"
    return lines[0]


def set_up_part(command: str) -> str:
    """The command's steps up to and including its ``pip install``."""
    steps = [step.strip() for step in command.split("&&")]
    last_install = max(i for i, step in enumerate(steps) if "pip install" in step)
    return " && ".join(steps[:last_install + 1])


def test_each_readme_command_sets_up_in_a_virtual_environment():
    for marker, runs in (("quickstart-train", "charrnn train"),
                         ("quickstart-test", "python -m pytest")):
        command = readme_command(marker)
        setup = set_up_part(command)
        assert "python3 -m venv" in setup and "pip install" in setup
        assert runs in command and runs not in setup
        assert "torch" not in setup     # the default torch wheel is several GB of CUDA


@pytest.mark.skipif(not os.path.exists(SYSTEM_PYTHON), reason="no system python3")
def test_readme_set_up_works_with_only_the_system_python3(tmp_path):
    project = tmp_path / "charrnn"
    project.mkdir()
    for name in PROJECT_FILES:
        source = os.path.join(ROOT, name)
        if os.path.isdir(source):
            shutil.copytree(source, project / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(source, project / name)
    home = tmp_path / "home"
    home.mkdir()
    bare = {"PATH": "/usr/bin:/bin", "HOME": str(home)}
    for marker, check in (("quickstart-train", "charrnn --version"),
                          ("quickstart-test", "python -m pytest --version")):
        script = f"{set_up_part(readme_command(marker))} >setup.log 2>&1 && {check}"
        done = subprocess.run(["sh", "-c", script], cwd=project, env=bare, capture_output=True,
                              text=True, timeout=600)
        log = (project / "setup.log").read_text(errors="replace")[-3000:]
        assert done.returncode == 0, f"{script}\n{log}\n{done.stderr[-2000:]}"
        if marker == "quickstart-train":
            assert done.stdout.strip() == f"charrnn, version {charrnn.__version__}"
        else:
            assert "pytest" in done.stdout + done.stderr
