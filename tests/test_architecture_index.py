"""docs/architecture.md's "Where is it" table names real code: every dotted name in it imports."""
import importlib
import re
from pathlib import Path

import pytest

ARCHITECTURE = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"
APPS = ("portal.", "queues.", "sms.", "chats.")


def index_names() -> list[str]:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    table = text.split("## Where is it", 1)[1].split("\n## ", 1)[0]
    return sorted({name for name in re.findall(r"`([\w.]+)`", table) if name.startswith(APPS)})


def resolve(dotted: str):
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            target = getattr(target, attribute)
        return target
    raise ImportError(dotted)


def test_the_index_is_there_and_full():
    assert len(index_names()) >= 40


@pytest.mark.parametrize("dotted", index_names())
def test_each_name_in_the_index_is_real(dotted):
    assert resolve(dotted) is not None


def test_each_front_end_file_in_the_index_is_there():
    text = ARCHITECTURE.read_text(encoding="utf-8")
    table = text.split("## Where is it", 1)[1].split("\n## ", 1)[0]
    paths = re.findall(r"`(static/[\w/.-]+\.js)`", table)
    assert paths, "the index names the adapter's front end"
    for path in paths:
        assert (ARCHITECTURE.parent.parent / path).is_file(), path
