"""Every document the code and the docs cite exists in the repository, section included."""

from __future__ import annotations

import re

from conftest import REPO

SOURCES = [
    p
    for pattern in ("benchmark/**/*.py", "methods/*.py", "datasets/*.py", "ecgbench/*.py", "*.md", "docs/*.md")
    for p in REPO.glob(pattern)
]


def test_cited_documents_and_sections_exist():
    cited = set()
    for path in SOURCES:
        for name, section in re.findall(r"docs/([\w-]+\.md)(?: §(\d+))?", path.read_text()):
            cited.add((name, section))
    assert ("method_specs.md", "6") in cited and ("design.md", "") in cited  # the scan itself works
    for name, section in sorted(cited):
        document = REPO / "docs" / name
        assert document.is_file(), f"docs/{name} is cited but missing"
        if section:
            assert re.search(rf"^## {section}\.", document.read_text(), re.MULTILINE), f"docs/{name} has no §{section}"
