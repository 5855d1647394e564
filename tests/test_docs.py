"""Every citation of the repository's own docs resolves, so a newcomer can follow a rule from the
code to its upstream source without a dead end (docs/README.md).

Cited forms: ``docs/<path>.md#<anchor>`` and, inside docs/, relative links ``<file>.md#<anchor>``;
``docs/architecture.md, "<Section>"`` (and ``("<Section>")`` after it) for architecture sections.
Anchors are GitHub's: a heading lowercased, punctuation dropped, spaces → dashes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [
    p
    for pattern in ("components/**/*.py", "policy/**/*.py", "tests/**/*.py", "bench/*.py",
                    "__main__.py", ".github/**/*.yml", ".github/scripts/*.py",
                    "components/derper/Dockerfile", "*.md", "docs/**/*.md", "Pulumi.yaml",
                    "tests/**/*.md", "tests/tools/*")
    for p in ROOT.glob(pattern)
    if p.is_file() and "venv" not in p.parts
]  # fmt: skip
CITATION = re.compile(r"docs/((?:[\w-]+/)*[\w.-]+\.md)(?:#([\w-]+))?")
SECTION = re.compile(r"docs/architecture\.md,?\s+\(?\"([^\"]+)\"")
RELATIVE_LINK = re.compile(r"\]\(((?:\.\./)?(?:[\w-]+/)*[\w.-]+\.md)(?:#([\w-]+))?\)")


def anchor_of(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def headings(path: Path) -> tuple[set[str], set[str]]:
    """(anchors, heading titles) of a Markdown file, fenced code excluded."""
    anchors, titles, fenced = set(), set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)):
            titles.add(m.group(1))
            anchors.add(anchor_of(m.group(1)))
    return anchors, titles


def citations() -> list[tuple[str, Path, str | None]]:
    """(where, target file, anchor) for every citation in the repository."""
    found = []
    for source in SOURCES:
        text = source.read_text(encoding="utf-8", errors="replace")
        where = str(source.relative_to(ROOT))
        for m in CITATION.finditer(text):
            found.append((where, ROOT / "docs" / m.group(1), m.group(2)))
        if source.suffix == ".md":
            for m in RELATIVE_LINK.finditer(text):
                found.append((where, (source.parent / m.group(1)).resolve(), m.group(2)))
    return found


# Every cited docs file exists and every cited anchor is one of its headings.
def test_every_docs_citation_resolves() -> None:
    broken = []
    cache: dict[Path, set[str]] = {}
    for where, target, anchor in citations():
        if not target.exists():
            broken.append(f"{where}: {target.relative_to(ROOT)} does not exist")
            continue
        if anchor is None:
            continue
        if target not in cache:
            cache[target] = headings(target)[0]
        if anchor not in cache[target]:
            broken.append(f"{where}: {target.relative_to(ROOT)}#{anchor} is no heading")
    assert not broken, "\n".join(sorted(set(broken)))


#: Links in Markdown to a heading of the same file, and to any file of the repository.
IN_PAGE = re.compile(r"\]\(#([\w-]+)\)")
REPO_LINK = re.compile(r"\]\((?!https?:|mailto:|#)([^)#\s]+)(?:#[\w-]+)?\)")


# Every in-page link of every Markdown file names one of its own headings.
def test_every_in_page_link_resolves() -> None:
    broken = []
    for source in (p for p in SOURCES if p.suffix == ".md"):
        anchors = headings(source)[0]
        for m in IN_PAGE.finditer(source.read_text(encoding="utf-8")):
            if m.group(1) not in anchors:
                broken.append(f"{source.relative_to(ROOT)}: #{m.group(1)}")
    assert not broken, "\n".join(broken)


# Every relative link of every Markdown file names a file or folder that exists.
def test_every_relative_link_resolves() -> None:
    broken = []
    for source in (p for p in SOURCES if p.suffix == ".md"):
        for m in REPO_LINK.finditer(source.read_text(encoding="utf-8")):
            if not (source.parent / m.group(1)).exists():
                broken.append(f"{source.relative_to(ROOT)}: {m.group(1)}")
    assert not broken, "\n".join(broken)


# The README is a map: short, and every guide is on it.
def test_readme_is_a_map_of_the_guides() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    guides = sorted(p.name for p in (ROOT / "docs" / "guide").glob("*.md"))
    missing = [g for g in guides if f"](docs/guide/{g})" not in readme]
    assert guides and not missing, missing


# Every architecture section the code names by title exists with that title.
def test_every_architecture_section_cited_exists() -> None:
    _, titles = headings(ROOT / "docs" / "architecture.md")
    missing = []
    for source in SOURCES:
        if source.name == "test_docs.py":
            continue
        text = source.read_text(encoding="utf-8", errors="replace")
        for m in SECTION.finditer(text):
            if m.group(1) not in titles:
                missing.append(f'{source.relative_to(ROOT)}: "{m.group(1)}"')
    assert not missing, "\n".join(sorted(set(missing)))


# The checker itself: a made-up anchor and a made-up section are caught.
@pytest.mark.parametrize(
    "heading, anchor",
    [
        ("Health runs", "health-runs"),
        ("`image` and the build", "image-and-the-build"),
        ("no-measure-no-home", "no-measure-no-home"),
    ],
)
def test_anchor_of(heading: str, anchor: str) -> None:
    assert anchor_of(heading) == anchor


# Nothing in the product cites notes that live outside the repository.
def test_no_citation_outside_the_repository() -> None:
    outside = re.compile(r"DESIGN\.md|reference/(derp|pulumi)\.md|\.\./shared/|(?<![\w.])/work/")
    offenders = [
        str(p.relative_to(ROOT))
        for p in SOURCES
        if p.name != "test_docs.py"
        and outside.search(p.read_text(encoding="utf-8", errors="replace"))
    ]
    assert not offenders, offenders
