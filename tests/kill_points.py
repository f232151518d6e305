"""Kill points that do not depend on the machine's speed, for the `kill -9` tests.

A crash test must kill a process *during* its work. Waiting a fixed time, or sizing the job "big enough",
works on one machine and fails on a faster or slower one. Instead:

- SQLite-backed work (comparison answers and scores, row cache, document store): `park_after` adds a trigger
  to the store so that the write of row N+1 never returns. The process stays alive inside that write
  transaction, nothing past row N is committed, and the test kills it as soon as it sees N rows: on any
  machine the kill lands at row N, inside an open transaction.
- Training: `UNREACHABLE_STEPS` with early stopping off, so the job cannot end before the test acts; the test
  kills (or cancels) at an event (a complete checkpoint, a logged step) and resumes with a short target.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from training.config import MAX_STEPS

# A training job with this many steps (and early stopping off) cannot finish while a test waits for an event:
# the most a job may ask for, a million; a tiny model's step takes milliseconds, so that is over half an hour.
UNREACHABLE_STEPS = MAX_STEPS

GATE, SPIN = "arena_test_park", "arena_test_spin"


def park_after(db: Path, table: str, rows: int, distinct: str = "") -> None:
    """From now on, storing `table`'s row number rows+1 never returns (with `distinct`: a row holding the
    (rows+1)-th distinct value of that column, so every row of a question already begun still goes in).
    Readers still see the `rows` committed rows."""
    new = f"NEW.{distinct} NOT IN (SELECT {distinct} FROM {table}) AND " if distinct else ""
    counted = f"COUNT(DISTINCT {distinct})" if distinct else "COUNT(*)"
    park(db, table, f"{new}(SELECT {counted} FROM {table}) >= {int(rows)}")


def park(db: Path, table: str, when: str) -> None:
    """From now on, an insert into `table` for which the SQL condition `when` holds never returns.

    A BEFORE INSERT trigger runs a 10^15-row cross join: the writing process stays alive, parked inside its
    write transaction, until it is killed; nothing of that transaction is committed. The table must exist
    (open the product's store once first)."""
    with sqlite3.connect(db, timeout=30) as con:
        con.execute(f"CREATE TABLE IF NOT EXISTS {SPIN}(x INTEGER)")
        con.execute(f"DELETE FROM {SPIN}")
        con.executemany(f"INSERT INTO {SPIN} VALUES (?)", [(i,) for i in range(1000)])
        con.execute(f"DROP TRIGGER IF EXISTS {GATE}")
        con.execute(f"CREATE TRIGGER {GATE} BEFORE INSERT ON {table} WHEN {when} BEGIN "
                    f"SELECT COUNT(*) FROM {SPIN} a, {SPIN} b, {SPIN} c, {SPIN} d, {SPIN} e; END")
    con.close()


def unpark(db: Path) -> None:
    """Remove the trigger and its table (after the parked process was killed): the store is as the product
    left it, and opening it rolls back the killed process's open transaction."""
    with sqlite3.connect(db, timeout=30) as con:
        con.execute(f"DROP TRIGGER IF EXISTS {GATE}")
        con.execute(f"DROP TABLE IF EXISTS {SPIN}")
    con.close()


def count(db: Path, sql: str) -> int:
    """A committed count, or 0 while the file or its table does not exist yet."""
    if not Path(db).is_file():
        return 0
    con = sqlite3.connect(db, timeout=5)
    try:
        return con.execute(sql).fetchone()[0]
    except sqlite3.OperationalError:  # the table is not created yet
        return 0
    finally:
        con.close()
