"""The count line of a long job (foundation/progress_line.py): `desc: done/total what, ETA`, drawn by tqdm."""

from __future__ import annotations

import io
import re

from foundation.progress_line import count_line


def test_count_line_starts_from_the_first_count_and_ends_on_the_last():
    out = io.StringIO()  # not a terminal: each redraw on a line of its own, at most every few seconds
    with count_line("paraphrases", "new questions", out):
        pass  # no count: nothing drawn
    assert out.getvalue() == ""
    with count_line("paraphrases", "new questions", out) as progress:
        for done in (4, 8, 12):  # 4 read back from the cache before the first count
            progress(done, 12)
    text = out.getvalue()
    assert "\r" not in text and "paraphrases: 12/12 new questions, ETA 00:00" in text.splitlines()
    counts = re.findall(r"^paraphrases: (\d+)/12 new questions, ETA ", text, re.MULTILINE)
    assert counts[0] == "4" and counts[-1] == "12"  # drawn from the first count on, never from 0
