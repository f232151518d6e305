"""The one progress line of a long CLI job, drawn by tqdm on stderr (stdout stays for the result and --json).

On a terminal tqdm redraws the line in place. In a log file (the UI's job log) a fast job would write hundreds
of redraws a second, so there tqdm redraws at most every LOG_EVERY_S seconds, each on a line of its own (its
'\\r' would make one ever-growing line). What the UI polls (metrics.jsonl, progress.json) is written apart.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tqdm import tqdm

LOG_EVERY_S = 5.0


def bar(total: float, desc: str = "", stream=None, **tqdm_args) -> tqdm:
    """A tqdm bar on `stream` (default stderr). miniters=0: a redraw is due by time alone, so a new text shows
    even when the count did not move."""
    stream = stream if stream is not None else sys.stderr
    tty = hasattr(stream, "isatty") and stream.isatty()
    return tqdm(total=total, desc=desc, file=stream if tty else _Lines(stream), dynamic_ncols=tty,
                mininterval=0.1 if tty else LOG_EVERY_S, miniters=0, leave=True, **tqdm_args)


def advance(line: tqdm, done: float, text: str) -> None:
    """Move `line` to `done` with `text` after the bar; drawn now or when next due."""
    line.set_postfix_str(text, refresh=False)
    line.update(done - line.n)


def percent_line(eta: bool = True):
    """A `progress(fraction, text)` callback on a percent bar (with tqdm's time left unless the caller's text
    has its own), and its `progress.close()`."""
    line = bar(100, bar_format="{percentage:3.0f}%|{bar:20}| {postfix}" + (" · ETA {remaining}" if eta else ""))

    def progress(fraction: float, text: str) -> None:
        advance(line, round(100 * min(max(fraction, 0.0), 1.0), 1), text)
    progress.close = line.close
    return progress


@contextmanager
def count_line(desc: str, what: str, stream=None) -> Iterator[Callable[[int, int], None]]:
    """A `progress(done, total)` callback drawing `desc: done/total what, ETA 00:42`, closed on leaving the block.
    The bar starts at the first count and tqdm's rate (so its time left) counts only what is done after it: what
    came before may have been read back from a cache in no time."""
    line = None

    def progress(done: int, total: int) -> None:
        nonlocal line
        if line is None:
            line = bar(total, desc, stream, initial=done,
                       bar_format="{desc}: {n_fmt}/{total_fmt} " + what + ", ETA {remaining}")
        line.update(done - line.n)
    try:
        yield progress
    finally:
        if line is not None:
            line.close()


class _Lines:
    """A log file as tqdm's output: each redraw on a line of its own."""

    def __init__(self, stream):
        self.stream, self.encoding = stream, getattr(stream, "encoding", None)  # tqdm checks it for Unicode

    def write(self, text: str) -> None:
        self.stream.write(text.replace("\r", "\n"))

    def flush(self) -> None:
        self.stream.flush()
