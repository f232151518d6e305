"""Markup to the text a reader sees: reST (docutils) and Markdown (markdown-it-py) are rendered to HTML, and
one HTML walker turns any of them into (section title, text) pairs.

Code blocks stay code (verbatim lines, indented four spaces), headings become section titles, paragraphs
are reflowed as a browser would, lists keep their bullets and tables their rows. Nothing of the source's
syntax (``.. code-block::``, ``**``, ``<b>``) is left in the text.
"""

from __future__ import annotations

import functools
import io
import re

HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
# Not text a reader sees: scripts, styles, embedded media and form controls.
HIDDEN = {"script", "style", "noscript", "template", "head", "svg", "canvas", "iframe", "object", "embed",
          "select", "button", "input", "textarea", "img", "video", "audio", "map"}
INLINE = {"a", "abbr", "b", "bdi", "bdo", "big", "cite", "code", "data", "del", "dfn", "em", "font", "i", "ins",
          "kbd", "label", "mark", "q", "s", "samp", "small", "span", "strike", "strong", "sub", "sup", "time",
          "tt", "u", "var", "wbr"}
CODE_INDENT = "    "
# Sphinx's cross-reference roles are unknown to plain docutils; shown as their title (or target), as Sphinx does.
SPHINX_ROLES = ("ref", "doc", "term", "class", "func", "meth", "mod", "attr", "obj", "data", "exc", "const",
                "option", "envvar", "program", "command", "file", "kbd", "guilabel", "menuselection", "abbr",
                "download", "numref", "keyword", "samp", "py:class", "py:func", "py:meth", "py:mod")
_TITLE_TARGET = re.compile(r"^(.*?)\s*<[^<>]*>$", re.S)


def markdown_to_html(text: str) -> str:
    """CommonMark plus tables and strikethrough, rendered by markdown-it-py (installed with gradio)."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(text)


def rst_to_html(text: str) -> str:
    """reStructuredText through docutils' HTML5 writer, with nothing read from outside the text."""
    from bs4 import BeautifulSoup
    from docutils.core import publish_parts

    _register_sphinx_roles()
    overrides = {
        "file_insertion_enabled": False,  # `.. include::` and `:file:` options must not read local files
        "raw_enabled": False,
        "_disable_config": True,  # no docutils.conf from the working or home folder
        "report_level": 5, "halt_level": 5, "warning_stream": io.StringIO(),  # never stop, never print
        "doctitle_xform": False, "sectsubtitle_xform": False,  # every title stays a section title
        "syntax_highlight": "none", "initial_header_level": 1, "embed_stylesheet": False,
    }
    body = publish_parts(source=text, writer="html5", settings_overrides=overrides)["body"]
    soup = BeautifulSoup(body, "html.parser")
    for tag in soup.select("nav.contents"):  # a `.. contents::` table repeats the titles: navigation, not content
        tag.decompose()
    return str(soup)


@functools.cache  # once per process, on the first reStructuredText document
def _register_sphinx_roles() -> None:
    from docutils.parsers.rst import roles

    for name in SPHINX_ROLES:
        roles.register_local_role(name, _sphinx_role)


def _sphinx_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    from docutils import nodes
    from docutils.utils import unescape

    text = unescape(text)
    match = _TITLE_TARGET.match(text)
    if match and match.group(1):
        shown = match.group(1)
    else:  # Sphinx shows `~a.b.C` as "C" and `!name` as "name"
        shown = text.lstrip("!").rsplit(".", 1)[-1] if text.startswith("~") else text.lstrip("!")
    return [nodes.literal(rawtext, shown)], []


def html_sections(html: str) -> list[tuple[str, str]]:
    """(title, text) per heading-delimited section of an HTML document; the text before any heading has ''."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    blocks: list[tuple[str, str]] = []
    _render(soup.body or soup, blocks)
    sections, title, parts = [], "", []
    for kind, text in blocks:
        if kind == "title":
            sections.append((title, "\n\n".join(parts)))
            title, parts = text, []
        else:
            parts.append(text)
    sections.append((title, "\n\n".join(parts)))
    return sections


def _render(node, out: list[tuple[str, str]], run: list[str] | None = None) -> None:
    """Append ("title" | "text", text) blocks for `node`'s children in reading order. Inline markup (with no block
    inside) adds its text to the `run` of the block around it, which the next block or the end flushes."""
    from bs4 import NavigableString, Tag
    from bs4.element import PreformattedString

    top, run = run is None, [] if run is None else run
    for child in node.children:
        if isinstance(child, PreformattedString):  # comments, doctype, processing instructions
            continue
        if isinstance(child, NavigableString):
            run.append(str(child).replace("\n", " "))  # a source line break is only whitespace in HTML
        elif isinstance(child, Tag) and child.name not in HIDDEN:
            if child.name == "br":
                run.append("\n")
            elif child.name in INLINE and not child.find(_is_block):
                _render(child, out, run)
            else:
                _flush(run, out)
                _block(child, out)
    if top:
        _flush(run, out)


def _is_block(tag) -> bool:
    return tag.name not in INLINE and tag.name not in HIDDEN and tag.name != "br"


def _flush(run: list[str], out: list[tuple[str, str]]) -> None:
    lines = [" ".join(line.split()) for line in "".join(run).split("\n")]
    text = "\n".join(line for line in lines if line)
    if text:
        out.append(("text", text))
    run.clear()


def _block(tag, out: list[tuple[str, str]]) -> None:
    if tag.name in HEADINGS:
        title = " ".join(tag.get_text(" ").split())
        if title:
            out.append(("title", title))
    elif tag.name == "pre":
        code = tag.get_text().strip("\n")
        if code.strip():
            out.append(("text", "\n".join(CODE_INDENT + line if line.strip() else "" for line in code.split("\n"))))
    elif tag.name in {"ul", "ol"}:
        _list(tag, out)
    elif tag.name == "table":
        rows = [" | ".join(" ".join(c.get_text(" ").split()) for c in tr.find_all(["th", "td"]))
                for tr in tag.find_all("tr")]
        if any(r.strip(" |") for r in rows):
            out.append(("text", "\n".join(r for r in rows if r.strip(" |"))))
    elif tag.name != "hr":
        _render(tag, out)


def _list(tag, out: list[tuple[str, str]]) -> None:
    """Each item as '- text' or 'n. text'; an item's further blocks (nested lists, code) are indented under it."""
    start = int(tag.get("start", 1)) if str(tag.get("start", "1")).lstrip("-").isdigit() else 1
    lines = []
    for n, item in enumerate(tag.find_all("li", recursive=False), start=start):
        inner: list[tuple[str, str]] = []
        _render(item, inner)
        text = "\n".join(t for _, t in inner)
        marker = f"{n}. " if tag.name == "ol" else "- "
        pad = " " * len(marker)
        body = text.split("\n")
        lines.append(marker + body[0] + "".join("\n" + (pad + line if line else "") for line in body[1:]))
    if lines:
        out.append(("text", "\n".join(lines)))
