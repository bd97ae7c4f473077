"""`make demo` must keep working: run examples/demo.py as the README's command does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support import integration_helpers as H

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.py"


@pytest.mark.timeout(90)
def test_the_demo_runs_and_every_pool_process_exits():
    proc = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True, timeout=60,
                          env=H.script_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "call('up')" in out and "-> True" in out
    assert "map(crunch, [10, 100, 1000]) -> [285, 328350, 332833500]" in out
    assert out.rstrip().endswith("Every pool process has exited. Done."), out
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "shutdown during init" not in proc.stderr  # a clean close is not a warning
