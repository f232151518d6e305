"""The one boundary for user-supplied names that become paths: `confine(folder, name, what)`.

Every name a user (CLI flag, YAML field, UI box, upload) can choose and that becomes a file or folder — job
ids, adapter names, uploaded document names, export names — goes through `confine`, which returns one plain
entry directly inside `folder`. Explicit location arguments of the command line (`--data-dir`, `--report`,
`--out`) are the local user's own choice of place and are not names.

The name is reduced rather than refused while something usable remains, so an uploaded `C:\\fakepath\\a.pdf`
or a job called `../../x` still works (as `a.pdf`, `x`); the caller shows the final name.
"""

from __future__ import annotations

import re
import shutil
import unicodedata
from pathlib import Path

from foundation.errors import ArenaError

# Windows device names: harmless on Linux, but a data folder copied to Windows could not hold them.
RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}
# ext4 and most file systems allow 255 bytes per entry; callers add prefixes/suffixes (a job id's timestamp,
# the registry's `.tmp-<name>-<pid>` build folder), so names keep well below it.
MAX_BYTES = 150
MAX_EXT = 10
# NUL and other controls, newlines, and format characters such as the right-to-left override that disguises
# an extension ("invoice\u202etxt.exe"); surrogates and private-use characters have no business in a name.
_DROP = {"Cc", "Cf", "Cs", "Co"}


def confine(folder: Path, name: str, what: str) -> Path:
    """`folder / name` where name is reduced to one plain entry; ArenaError naming `what` when none remains.

    Steps: NFKC normalisation first, so look-alikes that mean a separator or a dot pair (fullwidth '／', '＼',
    '．', the two-dot leader '‥') act as what they mean; backslashes count as separators; only the last path
    component is kept; control/format characters are dropped; leading dots, dashes and spaces and trailing
    dots and spaces go (no hidden files, no option-like names, nothing Windows would trim); Windows device
    names get a '_' prefix; the result is cut to MAX_BYTES of UTF-8, keeping a short extension. Finally the
    path is checked to stay inside `folder` (an existing symlink there is refused).
    """
    entry = _entry(name)
    if not entry:
        raise ArenaError(f"{what} {str(name)[:80]!r} has no usable characters (use letters, digits, - _ .)")
    folder = Path(folder)
    path = folder / entry
    if path.is_symlink() or path.resolve().parent != folder.resolve():
        raise ArenaError(f"{what} {entry!r} would leave {folder}")
    return path


def copy_upload(folder: Path, upload) -> str:
    """Copy an upload (a path, or Gradio's temp file object) into `folder` under its confined name; the copy's
    absolute path."""
    src = Path(getattr(upload, "name", upload))
    target = confine(folder, src.name, "upload name")
    target.parent.mkdir(parents=True, exist_ok=True)
    if src.resolve() != target.resolve():
        shutil.copy2(src, target)
    return str(target.resolve())


def shown_name(name: str) -> str:
    """A name as it is stored and shown (a document's source name): control and format characters dropped, so
    a file name cannot colour a terminal, break a line or reverse its text; whitespace runs become one space."""
    text = "".join(ch for ch in name if unicodedata.category(ch) not in _DROP)
    return re.sub(r"\s+", " ", text).strip()


def _entry(name) -> str:
    text = unicodedata.normalize("NFKC", "" if name is None else str(name)).replace("\\", "/")
    text = shown_name(text.rsplit("/", 1)[-1]).lstrip(". -").rstrip(". ")
    if text.split(".", 1)[0].upper() in RESERVED:
        text = "_" + text
    return _cut(text)


def _cut(text: str) -> str:
    """At most MAX_BYTES of UTF-8, cut at a character boundary; a short extension survives the cut."""
    if len(text.encode()) <= MAX_BYTES:
        return text
    stem, dot, ext = text.rpartition(".")
    if not dot or not stem or len(ext) > MAX_EXT:
        stem, ext = text, ""
    room = MAX_BYTES - len(ext.encode()) - (1 if ext else 0)
    stem = stem.encode()[:room].decode(errors="ignore").rstrip(". ")
    return f"{stem}.{ext}" if ext else stem
