"""docs/architecture.md must name every message that crosses a process boundary."""

from __future__ import annotations

from pathlib import Path

from honeydew.protocol import MESSAGES

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def test_every_message_class_is_in_the_architecture_doc() -> None:
    text = DOC.read_text()
    missing = sorted(cls.__name__ for cls in MESSAGES.values() if f"`{cls.__name__}`" not in text)
    assert not missing, f"docs/architecture.md does not mention: {missing}"


def test_the_doc_names_no_message_that_does_not_exist() -> None:
    text = DOC.read_text()
    table = text.split("## Messages", 1)[1].split("##", 1)[0]
    named = {line.split("`")[1] for line in table.splitlines() if line.startswith("| `")}
    assert named == {cls.__name__ for cls in MESSAGES.values()}
