"""The documentation holds together: every relative link in README.md, ARCHITECTURE.md and docs/*.md reaches a
file of this repository (and a `#anchor` a heading of the page it names, with GitHub's slugs), every docs/ page
is listed in the README, and CI runs the test command the README promises.

Links are read with markdown-it-py (the parser retrieval/markup.py already uses), so text inside code spans and
code blocks is never mistaken for a link. http(s) and mailto links are not followed.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from urllib.parse import unquote

from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[1]
EXTERNAL = ("http://", "https://", "mailto:")
# GitHub's anchors for a line or line range of a non-Markdown file: file.py#L10, file.py#L10-L20.
LINE_ANCHOR = re.compile(r"L\d+(-L\d+)?")


def doc_pages() -> list[Path]:
    return [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *sorted((ROOT / "docs").glob("*.md"))]


@cache
def tokens(path: Path) -> list:
    return MarkdownIt("commonmark").enable("table").parse(path.read_text(encoding="utf-8"))


def links(path: Path) -> list[tuple[int, str]]:
    """(line, target) of every link and image in a Markdown file."""
    found = []
    for block in tokens(path):
        line = block.map[0] + 1 if block.map else 0
        for tok in block.children or []:
            if tok.type == "link_open":
                found.append((line, tok.attrs["href"]))
            elif tok.type == "image":
                found.append((line, tok.attrs["src"]))
    return found


def slug(text: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, each space a hyphen."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    """Every heading anchor of a Markdown file; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    toks = tokens(path)
    for opening, inline in zip(toks, toks[1:], strict=False):
        if opening.type != "heading_open":
            continue
        base = slug("".join(c.content for c in inline.children if c.type in ("text", "code_inline")))
        count = seen.get(base, 0)
        seen[base] = count + 1
        if count:
            seen.setdefault(f"{base}-{count}", 1)
    return frozenset(seen)


def broken(page: Path, target: str) -> str | None:
    """Why a link of `page` does not resolve, or None when it does."""
    file_part, _, anchor = target.partition("#")
    dest = (page.parent / unquote(file_part)).resolve() if file_part else page
    if not dest.is_relative_to(ROOT):
        return "points outside the repository"
    if not dest.exists():
        return "no such file"
    if not anchor:
        return None
    if dest.suffix == ".md":
        return None if unquote(anchor) in anchors(dest) else f"no heading #{anchor} in {dest.relative_to(ROOT)}"
    return None if LINE_ANCHOR.fullmatch(anchor) else f"#{anchor} is not a line anchor"


def test_every_relative_link_resolves():
    problems = [f"{page.relative_to(ROOT)}:{line}: ({target}) {why}"
                for page in doc_pages()
                for line, target in links(page)
                if not target.startswith(EXTERNAL) and (why := broken(page, target))]
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_the_pages_have_links_to_check():
    # A parser that found no links would pass the test above for nothing.
    assert len([t for p in doc_pages() for _, t in links(p) if not t.startswith(EXTERNAL)]) > 30
    assert {"decide-documents-to-a-verdict", "two-commands"} <= anchors(ROOT / "README.md") | anchors(
        ROOT / "docs" / "decide.md")


def test_every_docs_page_is_listed_in_the_readme():
    listed = {(ROOT / t.partition("#")[0]).resolve() for _, t in links(ROOT / "README.md")}
    missing = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if p.resolve() not in listed]
    assert not missing, f"docs pages the README does not link: {missing}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Two commands", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    assert commands == ["make run", "make test"]
    ci = [line.split("#", 1)[0].strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert "make test" in ci
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
