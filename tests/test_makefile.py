"""`make demo` installs what running needs and says what to do next; `make test` adds the
development tools. Read from what make would run (`make -n -B`), nothing executed."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from conftest import REPO

DEV_TOOLS = ("pytest", "hypothesis", "mypy", "ruff", "py-spy")

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def planned(target: str, tmp_path: Path) -> list[str]:
    """The commands ``make TARGET`` would run from scratch, into a venv that does not exist."""
    # Under `make test` (CI) the outer make's MAKEFLAGS/MAKELEVEL would make this one print
    # "Entering directory" lines: plan as a make started from a shell would.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", "-B", target, f"VENV={tmp_path / 'venv'}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.splitlines()


def test_the_runtime_dependencies_hold_no_development_tool() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime = " ".join(project["dependencies"])
    dev = " ".join(project["optional-dependencies"]["dev"])
    assert [tool for tool in DEV_TOOLS if tool in runtime] == []
    assert [tool for tool in DEV_TOOLS if tool not in dev] == []


def test_demo_installs_what_running_needs_and_shows_it(tmp_path: Path) -> None:
    lines = planned("demo", tmp_path)
    installs = [line for line in lines if " -m pip install" in line]
    assert installs[-1].endswith("-m pip install -e .")
    assert not any("[dev]" in line or " -q" in line for line in installs)
    # A line that says what is happening before each step, not a silent minute.
    steps = [line for line in lines if line.startswith('echo "==> ')]
    assert len(steps) >= len(installs) + 5


def test_demo_ends_with_the_next_steps(tmp_path: Path) -> None:
    text = "\n".join(planned("demo", tmp_path))
    tail = text[text.index("status") :]
    for hint in ("outbox/new/", "less outbox/new/", "digest-mail preview", "digest-mail init"):
        assert hint in tail
    assert "digest-mail dev-smtp &" in tail and "smtp://127.0.0.1:1025" in tail


def test_test_adds_the_development_tools_then_runs_the_suite(tmp_path: Path) -> None:
    lines = planned("test", tmp_path)
    installs = [line for line in lines if " -m pip install" in line]
    assert installs[-1].endswith("-m pip install -e '.[dev]'")
    assert lines[-1].endswith("-m pytest")


def test_ci_runs_make_test() -> None:
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in ci.splitlines()
