"""The caller's modules keep to their side of the tree: ``pool.py`` holds the API and the pool's
lifecycle; starting the tree is ``_launch.py``'s, so ``pool.py`` imports no module that runs in
the supervisor or a worker."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "honeydew"
NOT_FOR_POOL = {"honeydew.supervisor", "honeydew.worker"}


def imported_modules(path: Path, package: str = "honeydew") -> set[str]:
    """Every module ``path`` imports, anywhere in it, as an absolute name; ``from X import name``
    counts both ``X`` and ``X.name`` (``name`` may be a submodule)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.add(module)
            out.update(f"{module}.{alias.name}" if module else alias.name for alias in node.names)
    return out


def test_the_helper_sees_every_form_of_import(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("from . import supervisor\nfrom .worker import run\nimport honeydew.monitor\n"
                   "from honeydew import queue_process as q\ndef f():\n    from .. import elsewhere\n")
    found = imported_modules(src)
    assert {"honeydew.supervisor", "honeydew.worker", "honeydew.monitor", "honeydew.queue_process"} <= found
    assert "elsewhere" in found


def test_pool_imports_neither_the_supervisor_nor_the_worker() -> None:
    found = imported_modules(PACKAGE / "pool.py")
    assert "honeydew._launch" in found, "pool.py should start its tree through honeydew._launch"
    assert not found & NOT_FOR_POOL, f"pool.py imports {sorted(found & NOT_FOR_POOL)}: starting the tree is _launch's"



def test_the_inbox_knows_no_pool() -> None:
    """The inbox is given its sockets and the pool's events: it imports nothing of the pool's."""
    found = imported_modules(PACKAGE / "_inbox.py")
    assert not found & ({"honeydew.pool", "honeydew._launch"} | NOT_FOR_POOL), sorted(found)
