"""Third-party FAQs for the decide benchmark: pinned PyPI source distributions, their FAQ pages, Q/A pairs.

Every corpus is real text written by its project, never by us: the sdist of a pinned version is fetched once from
PyPI's JSON API (https://pypi.org/pypi/NAME/json; the file's url there is relative, joined against that address)
and checked against the sha256 pinned here, which must also be the one PyPI lists. Only the FAQ pages are kept.
No build runs (`pip download --no-binary` would prepare metadata, which builds e.g. borgbackup's C extension).

- django: the Django FAQ (docs/faq/*.txt of Django 5.2.19, BSD-3-Clause): 8 pages, 44 pairs.
- pypi-faqs: no single permissively licensed FAQ of 150 question sections was found in a PyPI sdist (what was
  checked is in docs/benchmarks.md; the largest were borgbackup 58, docutils 37 and cython 36 pairs by this
  parser, lxml 34, celery 40 but with its documentation under CC BY-SA 4.0), so four projects' FAQs are combined,
  each page its own document with `source` PROJECT/PAGE: borgbackup 1.4.5 docs/faq.rst (BSD-3-Clause),
  docutils 0.23.1 FAQ.rst (public domain, says the page), Cython 3.3.2 docs/src/userguide/faq.rst (Apache-2.0),
  SQLAlchemy 2.1.9 doc/build/faq/*.rst (MIT, 8 pages): 166 pairs.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import tarfile
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

MAX_ANSWER_WORDS = 40
PYPI_JSON = "https://pypi.org/pypi/{project}/json"


@dataclass(frozen=True)
class Sdist:
    """One pinned source distribution and the FAQ pages to keep from it (globs below its top folder)."""

    project: str
    version: str
    sha256: str
    licence: str
    pages: tuple[str, ...]

    @property
    def filename(self) -> str:
        return f"{self.project}-{self.version}.tar.gz"


@dataclass(frozen=True)
class Corpus:
    title: str
    sdists: tuple[Sdist, ...]
    by_group: bool = False  # sources PAGE#GROUP (faq_pairs); Django's stay PAGE, as its recorded runs had them

    def describe(self) -> str:
        return "; ".join(f"{s.project} {s.version} ({s.licence})" for s in self.sdists)


DJANGO = Sdist("django", "5.2.19", "ad03d8abc51dbff95ebf34b27123cf0c26a3b62db7ba0cd520783686362533d1",
               "BSD-3-Clause", ("docs/faq/*.txt",))
CORPORA = {
    "django": Corpus("the Django FAQ", (DJANGO,)),
    "pypi-faqs": Corpus("four projects' FAQs from their PyPI sdists", by_group=True, sdists=(
        Sdist("borgbackup", "1.4.5", "4f9a5fe584c504b15485841236750dea16aa7cd2ddbc4a594e9d2ce5c49c4508",
              "BSD-3-Clause", ("docs/faq.rst",)),
        Sdist("docutils", "0.23.1", "8a83ac8810e41228b6f20e96a183abd2460a1757f78e2603e3d4b31fe7d29622",
              "public domain", ("FAQ.rst",)),
        Sdist("cython", "3.3.2", "e789d9fd939b74fb8c572fc2b689e3b14bd141ba95243693a546064c8179a1d3",
              "Apache-2.0", ("docs/src/userguide/faq.rst",)),
        Sdist("sqlalchemy", "2.1.9", "d700a8b2edfb26282a470333d6bc4a454c4acda4d201a3bea7b72fa76c217d28",
              "MIT", ("doc/build/faq/*.rst",)),
    )),
}


def fetch_corpus(name: str, cache: Path) -> Path:
    """The corpus's FAQ pages as .rst files under cache (fetched and extracted once). A one-project corpus keeps
    its pages flat (the Django run's sources stay 'admin.rst', ...); a combined one puts them in PROJECT/."""
    corpus = CORPORA[name]
    out = cache / ("faq" if name == "django" else f"faq-{name}")  # "faq": the Django folder of earlier runs
    for sdist in corpus.sdists:
        pages = out if len(corpus.sdists) == 1 else out / sdist.project
        if not (pages.is_dir() and any(pages.glob("*.rst"))):  # each project once, also after an interrupted fetch
            extract_pages(download_sdist(sdist, cache / "sdist"), sdist, pages)
    return out


def download_sdist(sdist: Sdist, folder: Path) -> Path:
    """The pinned sdist from PyPI (kept in folder), its sha256 checked against the pin and PyPI's own digest."""
    path = folder / sdist.filename
    if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == sdist.sha256:
        return path
    index = PYPI_JSON.format(project=sdist.project)
    with urllib.request.urlopen(index, timeout=60) as response:
        files = json.load(response)["releases"].get(sdist.version, [])
    entry = next((f for f in files if f["packagetype"] == "sdist" and f["filename"] == sdist.filename), None)
    if entry is None or entry["digests"]["sha256"] != sdist.sha256:
        raise SystemExit(f"{sdist.filename}: PyPI lists no such sdist with the pinned sha256 {sdist.sha256}")
    with urllib.request.urlopen(urllib.parse.urljoin(index, entry["url"]), timeout=300) as response:
        data = response.read()
    if hashlib.sha256(data).hexdigest() != sdist.sha256:
        raise SystemExit(f"{sdist.filename}: the downloaded file does not have the pinned sha256")
    folder.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def extract_pages(archive: Path, sdist: Sdist, out: Path) -> None:
    """The sdist's FAQ pages (its `pages` globs, index pages left out) as out/PAGE.rst."""
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            inner = member.name.split("/", 1)[-1]
            stem = Path(inner).stem
            if member.isfile() and stem != "index" and any(fnmatch.fnmatch(inner, g) for g in sdist.pages):
                (out / f"{stem}.rst").write_bytes(tar.extractfile(member).read())


def faq_pairs(folder: Path, by_group: bool = False) -> list[dict]:
    """(question title, first sentences of its section) per question-titled section, via docutils; `source` is
    the page's path below folder (and the question's group heading with by_group)."""
    from docutils import nodes
    from docutils.core import publish_doctree

    pairs = []
    for page in sorted(folder.rglob("*.rst")):
        # Sphinx roles (:doc:, :setting:) are unknown to plain docutils: keep their text, report nothing.
        tree = publish_doctree(page.read_text(encoding="utf-8"),
                               settings_overrides={"report_level": 5, "halt_level": 5, "warning_stream": False,
                                                   "file_insertion_enabled": False})
        for section in tree.findall(nodes.section):
            title = title_of(section)
            para = first_paragraph(section)
            if not title.endswith("?") or para is None:
                continue
            answer = _first_words(answer_text(para.astext()))
            if len(answer) >= 20:
                pairs.append({"question": title, "answer": answer, "source": source(page.relative_to(folder),
                                                                                      section, by_group)})
    return pairs


def source(page: Path, section, by_group: bool) -> str:
    """PAGE, or with by_group PAGE#GROUP for a question under a group heading ('borgbackup/faq.rst#Security'):
    decide holds out questions sharing a source together and its statistics resample sources whole, so a
    one-page FAQ of 58 questions needs its groups to be more than one unit. A question nested in a question
    belongs to the outer one's group."""
    from docutils import nodes

    group = section.parent
    while isinstance(group, nodes.section) and title_of(group).endswith("?") and first_paragraph(group):
        group = group.parent  # a question with its own answer, not a group ('How do I ...?' in Cython's is)
    if not by_group or not isinstance(group, nodes.section):
        return page.as_posix()
    return f"{page.as_posix()}#{title_of(group)}"


def first_paragraph(section):
    from docutils import nodes

    return next((p for p in section.findall(nodes.paragraph) if p.parent is section), None)


def title_of(section) -> str:
    from docutils import nodes

    return question_title(section.next_node(nodes.title).astext())


def question_title(title: str) -> str:
    """A title as read: one line, without the number `.. sectnum::` puts before it ('1.2   Why ...?' in docutils)."""
    return re.sub(r"^\d+(\.\d+)*\.?\s+", "", " ".join(title.split()))


def answer_text(text: str) -> str:
    """A paragraph as the reference answer: one line, roles as read, without the '**Answer:**' lead-in some FAQs
    (Cython's) put before every answer."""
    return re.sub(r"^Answer:\s*", "", plain_roles(" ".join(text.split())))


def plain_roles(text: str) -> str:
    """Sphinx cross-references as a reader sees them: :class:`~a.b.C` -> C, :ref:`text <label>` -> text."""
    def show(m: re.Match) -> str:
        inner = m.group(1)
        if "<" in inner:
            return inner.split("<", 1)[0].strip()
        return inner.rsplit(".", 1)[-1] if inner.startswith("~") else inner
    return re.sub(r":[\w:+-]+:`([^`]*)`", show, text).replace("``", "")


def _first_words(text: str) -> str:
    """Whole sentences up to MAX_ANSWER_WORDS words (at least the first sentence)."""
    out = []
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        if out and len(" ".join(out + [sentence]).split()) > MAX_ANSWER_WORDS:
            break
        out.append(sentence)
    return " ".join(out)
