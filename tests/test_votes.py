"""Votes round-trip through a real SQLite file."""

import pytest

from foundation.errors import ArenaError
from foundation.votes import VoteStore


def test_votes_round_trip(tmp_path):
    store = VoteStore(tmp_path / "votes.sqlite")
    answers = {"base": "I think 4.", "rag": "The manual says 4 [1]."}
    vid = store.add("How many bolts?", answers, "rag", context="[1] manual.pdf p.3", blind=True)
    reopened = VoteStore(tmp_path / "votes.sqlite")
    (vote,) = reopened.all()
    assert vote.id == vid and vote.question == "How many bolts?" and vote.answers == answers
    assert vote.winner == "rag" and vote.context == "[1] manual.pdf p.3" and vote.blind
    assert reopened.count() == 1


def test_vote_for_unknown_variant_is_refused_and_nothing_stored(tmp_path):
    store = VoteStore(tmp_path / "votes.sqlite")
    with pytest.raises(ArenaError, match="winner 'ft'"):
        store.add("q", {"base": "a"}, "ft")
    assert store.count() == 0
