"""`make test-fast` (pytest --fast): the tests marked slow are left out, and a test that starts
a process without the mark fails, saying to mark it: the subset stays fast as tests are
added."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]

SCRATCH_TESTS = textwrap.dedent("""\
    import subprocess

    import pytest


    def test_pure() -> None:
        assert 1 + 1 == 2


    def test_starts_a_process() -> None:
        subprocess.run(["true"], check=True)


    @pytest.mark.slow
    def test_marked() -> None:
        subprocess.run(["true"], check=True)
""")


def run_pytest(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_scratch.py").write_text(SCRATCH_TESTS)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider",
         "-p", "no:cloudcoil", "-q", "--rootdir", str(tmp_path), *options,
         str(tmp_path / "test_scratch.py")],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.slow
def test_fast_leaves_out_the_marked_and_fails_an_unmarked_process(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, "--fast")
    assert "1 failed, 1 passed, 1 deselected" in result.stdout, result.stdout
    assert "test_starts_a_process" in result.stdout
    assert "is `@pytest.mark.slow`" in result.stdout


@pytest.mark.slow
def test_without_fast_everything_runs(tmp_path: Path) -> None:
    result = run_pytest(tmp_path)
    assert "3 passed" in result.stdout, result.stdout
