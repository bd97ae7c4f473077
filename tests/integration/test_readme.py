"""The README's "Use it" example must run exactly as written.

The python blocks whose first line is ``# riak_worker.py`` and ``# script.py`` are written, untouched,
into a temporary directory, and ``script.py`` is run there as a user would run it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from support import integration_helpers as H

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks(text: str) -> dict[str, str]:
    """The README's python code blocks, by the file name on their first line (``# name.py``)."""
    blocks: dict[str, str] = {}
    for body in re.findall(r"^```python\n(.*?)^```$", text, flags=re.DOTALL | re.MULTILINE):
        first = body.split("\n", 1)[0]
        m = re.fullmatch(r"# (\w+\.py)", first.strip())
        if m:
            assert m.group(1) not in blocks, f"two README blocks are named {m.group(1)}"
            blocks[m.group(1)] = body
    return blocks


def processes_in(directory: Path) -> list[str]:
    """Processes still running with ``directory`` as their working directory (the script's pool)."""
    found = []
    for p in psutil.process_iter(["pid", "name", "cwd", "status"]):
        if p.info["cwd"] == str(directory) and p.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(f"{p.info['pid']} {p.info['name']}")
    return found


@pytest.mark.timeout(90)
def test_the_readme_example_runs_as_written(tmp_path: Path) -> None:
    blocks = python_blocks(README.read_text())
    assert {"riak_worker.py", "script.py"} <= blocks.keys(), f"README blocks found: {sorted(blocks)}"
    for name in ("riak_worker.py", "script.py"):
        (tmp_path / name).write_text(blocks[name])

    proc = subprocess.run([sys.executable, "script.py"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env=H.script_env())

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    # up -> True; get by function after the cast's put -> value; the future -> value; the lambda -> pong;
    # a key never put, with per-job options -> None
    assert proc.stdout.splitlines() == ["True", "value", "value", "pong", "None"], proc.stdout
    # leaving `with` joined the pool: no process of the script's pool outlives the script
    deadline = time.monotonic() + 5
    while (left := processes_in(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"pool processes left behind by the README script: {left}"
