"""The decide benchmark's FAQ corpora (benchmarks/faq_corpora.py), offline: pages kept from an sdist, Q/A pairs
parsed from real FAQ text, and the --plans list of benchmarks/decide.py."""

import hashlib
import tarfile

import pytest

from benchmarks.faq_corpora import CORPORA, Sdist, download_sdist, extract_pages, faq_pairs

# From docutils 0.23.1 FAQ.rst (the docutils sdist on PyPI; "This document has been placed in the public
# domain."), shortened: the include, contents and sectnum directives and two question sections.
DOCUTILS_FAQ = """\
.. include:: docs/header0.rst

===========================================
 Docutils FAQ (Frequently Asked Questions)
===========================================

:Copyright: This document has been placed in the public domain.

.. contents::
.. sectnum::

This is a work in progress.  If you are reading a local copy, the
`master copy`_ might be newer.

Docutils
========

What is Docutils?
-----------------

Docutils_ is a system for processing plaintext documentation into
useful formats, such as HTML, XML, and LaTeX.  It supports multiple
types of input, such as standalone files, `PEPs (Python Enhancement
Proposals)`_, and string input.

For an overview of the Docutils project implementation,
see :PEP:`258`, "Docutils Design Specification".

.. _Docutils: https://docutils.sourceforge.io/
.. _PEPs (Python Enhancement Proposals):
   https://peps.python.org/pep-0012

Why is it called "Docutils"?
----------------------------

Docutils is short for "Python Documentation Utilities".  The name
"Docutils" was inspired by "Distutils", the Python Distribution
Utilities architected by Greg Ward, a component of Python's standard
library.
"""

# From Cython 3.3.2 docs/src/userguide/faq.rst (the Cython sdist on PyPI; Apache License 2.0, copyright the
# Cython developers), shortened: its "**Answer**:" lead-ins, a Sphinx role, a group whose title ends in "?" and
# an answer that is only code (no reference answer to score against).
CYTHON_FAQ = """\
.. _FAQ:

FAQ
+++

Basics
======

Do I need to rename my ``.py`` file to ``.pyx``?
^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^

**Answer**: No. Cython can compile both .py and .pyx files. The difference is that the extended Cython syntax (``cdef …``) is only available in Cython .pyx files and not in Python .py files.

But you can use Cython's :ref:`pure Python mode <pure-mode>` to provide type declarations for the compilation, including Python's PEP-484 syntax for type hints.

----------

Can Cython generate C code for classes?
^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^

**Answer**: A plain class becomes a fully-fledged Python class.
Cython can also generate C classes, where the class data is stored in an
efficient C structure at the cost of some additional limitations.

How do I ...?
=============

How do I declare a global variable?
^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^

**Answer**:

::

    global variable

----------

How do I assign to a global variable?
^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^

**Answer**: You need to declare the variable to be global (see above) before
trying to assign to it. Often this occurs when one has code like

----------

About the project
=================

Is Cython a Python implementation?
^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^

**Answer**: Not officially, no. However, it compiles almost all existing Python
code, which gets it pretty close to a real Python implementation.
"""

# From borgbackup 1.4.5 docs/faq.rst (the borgbackup sdist on PyPI; BSD-3-Clause, copyright the Borg
# Collective): its head and two groups of one question each, shortened.
BORG_FAQ = """\
.. include:: global.rst.inc
.. highlight:: none
.. _faq:

Frequently asked questions
==========================

Security
########

How can I protect against a hacked backup server?
-------------------------------------------------

Just in case you got the impression that pull-mode backups are way more safe
than push-mode, you also need to consider the case that your backup server S
gets hacked. In case S has access to a lot of clients C, that might bring you
into even bigger trouble than a hacked backup client in the previous FAQ entry.

These are your options to protect against that:

- Use the standard push-mode setup (see also previous FAQ entry).

Migrating from Attic
####################

What are the differences between Attic and Borg?
------------------------------------------------

Borg is a fork of `Attic`_ and maintained by "`The Borg collective`_".

.. _Attic: https://github.com/jborg/attic
.. _The Borg collective: https://borgbackup.readthedocs.org/en/latest/authors.html
"""


def test_pairs_from_combined_faq_pages(tmp_path):
    (tmp_path / "docutils").mkdir()
    (tmp_path / "cython").mkdir()
    (tmp_path / "docutils" / "FAQ.rst").write_text(DOCUTILS_FAQ, encoding="utf-8")
    (tmp_path / "cython" / "faq.rst").write_text(CYTHON_FAQ, encoding="utf-8")
    (tmp_path / "borgbackup").mkdir()
    (tmp_path / "borgbackup" / "faq.rst").write_text(BORG_FAQ, encoding="utf-8")

    pairs = faq_pairs(tmp_path, by_group=True)

    assert [(p["source"], p["question"]) for p in pairs] == [
        ("borgbackup/faq.rst#Security", "How can I protect against a hacked backup server?"),
        ("borgbackup/faq.rst#Migrating from Attic", "What are the differences between Attic and Borg?"),
        ("cython/faq.rst#Basics", "Do I need to rename my .py file to .pyx?"),
        ("cython/faq.rst#Basics", "Can Cython generate C code for classes?"),
        # 'How do I declare a global variable?' is left out: its answer is only code
        ("cython/faq.rst#How do I ...?", "How do I assign to a global variable?"),  # a group, though it ends in ?
        ("cython/faq.rst#About the project", "Is Cython a Python implementation?"),
        ("docutils/FAQ.rst#Docutils", "What is Docutils?"),  # without the "1.1" that sectnum puts before it
        ("docutils/FAQ.rst#Docutils", 'Why is it called "Docutils"?'),
    ]
    # without groups (the Django corpus): the page alone
    assert [p["source"] for p in faq_pairs(tmp_path)] == [p["source"].split("#")[0] for p in pairs]
    answers = [p["answer"] for p in pairs]
    assert answers[2] == ("No. Cython can compile both .py and .pyx files. The difference is that the extended "
                          "Cython syntax (cdef …) is only available in Cython .pyx files and not in Python .py "
                          "files.")  # no "Answer:" lead-in, no literal markup, only the first paragraph
    assert answers[3] == ("A plain class becomes a fully-fledged Python class. Cython can also generate C "
                          "classes, where the class data is stored in an efficient C structure at the cost of "
                          "some additional limitations.")
    assert answers[6] == ("Docutils is a system for processing plaintext documentation into useful formats, "
                          "such as HTML, XML, and LaTeX. It supports multiple types of input, such as standalone "
                          "files, PEPs (Python Enhancement Proposals), and string input.")  # links as their text
    assert answers[1] == 'Borg is a fork of Attic and maintained by "The Borg collective".'
    # whole sentences up to 40 words: the second would make 59
    assert answers[0] == ("Just in case you got the impression that pull-mode backups are way more safe than "
                          "push-mode, you also need to consider the case that your backup server S gets hacked.")
    assert "docs/header0.rst" not in " ".join(answers)  # the include was not followed


def sdist_with(folder, files: dict[str, bytes]) -> bytes:
    """A .tar.gz laid out like an sdist: NAME-VERSION/... paths."""
    archive = folder / "built.tar.gz"
    with tarfile.open(archive, mode="w:gz") as tar:
        for i, (name, data) in enumerate(files.items()):
            (folder / f"f{i}").write_bytes(data)
            tar.add(folder / f"f{i}", arcname=name)
    return archive.read_bytes()


def test_only_the_pinned_faq_pages_are_extracted(tmp_path):
    data = sdist_with(tmp_path, {"demo-1.0/doc/faq/index.rst": b"toc", "demo-1.0/doc/faq/sessions.rst": b"s",
                       "demo-1.0/doc/faq/connections.rst": b"c", "demo-1.0/doc/intro.rst": b"i",
                       "demo-1.0/README.rst": b"r"})
    archive = tmp_path / "demo-1.0.tar.gz"
    archive.write_bytes(data)
    sdist = Sdist("demo", "1.0", hashlib.sha256(data).hexdigest(), "MIT", ("doc/faq/*.rst",))

    extract_pages(archive, sdist, tmp_path / "out")

    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["connections.rst", "sessions.rst"]
    # a cached file with the pinned sha256 is used as it is: no network
    assert download_sdist(sdist, tmp_path) == archive


def test_corpora_pin_permissive_versions():
    combined = CORPORA["pypi-faqs"].sdists
    assert {s.project for s in combined} == {"borgbackup", "docutils", "cython", "sqlalchemy"}
    assert all(len(s.sha256) == 64 and s.licence in {"BSD-3-Clause", "MIT", "Apache-2.0", "public domain"}
               for s in (*combined, *CORPORA["django"].sdists))


def test_plans_list():
    from benchmarks.decide import plan_budgets

    assert plan_budgets("default,fitted,20", 10.0) == {"default": 10.0, "fitted": 0.0, "20": 20.0}
    assert plan_budgets(" default ", 4.0) == {"default": 4.0}
    for bad in ("", "default,long", "0"):
        with pytest.raises(SystemExit):
            plan_budgets(bad, 10.0)
