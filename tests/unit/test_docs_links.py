"""The README and docs/ point at what exists: every relative link (and its heading anchor) and
every repository path written in backticks, so a moved module or section cannot leave a dead
pointer behind (issue 14 moved 40 modules and split a 1,011-line README into six files)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
DOCUMENTS = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE = re.compile(r"`([^`\s]+)`")
REPOSITORY_PATH = re.compile(
    r"^(?:bench|client|docs|examples|schemas|tasks|tests|worker|\.ci)/[\w./-]*$"
    r"|^(?:README|BENCHMARKS)\.md$|^docker-compose\.yml$|^pyproject\.toml$|^Makefile$"
)


def _slug(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, flags=re.M)}


def _dead_pointers(document: Path) -> list[str]:
    text, dead = document.read_text(), []
    for match in LINK.finditer(text):
        target = match.group(1)
        if re.match(r"^[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        path = (document.parent / file).resolve() if file else document
        if not path.exists():
            dead.append(f"link to missing {target}")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            dead.append(f"link to a missing heading {target}")
    for match in CODE.finditer(text):
        named = match.group(1)
        concrete = REPOSITORY_PATH.match(named) and "<" not in named and "*" not in named
        if concrete and not (ROOT / named).exists():
            dead.append(f"missing path `{named}`")
    return dead


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_every_link_and_path_in_the_docs_exists(document: Path) -> None:
    assert _dead_pointers(document) == []


def test_a_dead_pointer_is_found(tmp_path: Path) -> None:
    """The check can fail: a link to a moved module and a path that is gone are reported."""
    document = tmp_path / "README.md"
    document.write_text("[old](worker/processing.py) and `worker/celery_app.py`\n")
    assert _dead_pointers(document) == [
        "link to missing worker/processing.py",
        "missing path `worker/celery_app.py`",
    ]
