"""Near-duplicate detection of the leakage guard (foundation/leakage.py): the embedding cosine AND the
word-order agreement must both pass. A question with two words swapped around a connecting word asks the
opposite and must not be called a copy, with MiniLM (cosine 0.995) or an order-blind embedder (cosine 1.0);
paraphrases and exact copies must still be caught, by the comparison's warning and by decide's drop."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from foundation.leakage import (
    NEAR_DUPLICATE_COSINE,
    find_overlaps,
    order_agreement,
    overlap_warnings,
)

SWAPPED = ("How do I convert a string to a number?", "How do I convert a number to a string?")
ROLE_SWAPS = [SWAPPED,
              ("How do I transfer money from savings to checking?", "How do I transfer money from checking to savings?"),
              ("Is Python faster than Java?", "Is Java faster than Python?"),
              ("Can a guest invite a member?", "Can a member invite a guest?")]
# (evaluation, training): real paraphrases, reworded or reordered without changing what is asked
PARAPHRASES = [("How do I reset my password?", "What's the way to reset my password?"),
               ("How long does the battery warranty last?", "What is the warranty period for the battery?"),
               ("Is there a student discount?", "Do you offer a discount for students?"),
               ("How do I move files from my laptop to the server?",
                "How do I move files to the server from my laptop?"),
               ("Can I pay with card and cash?", "Can I pay with cash and card?")]


class BagOfWords:
    """An order-blind embedder: word counts over the texts' vocabulary (the worst case, cosine 1.0 for a swap)."""

    def encode(self, texts):
        words = [re.findall(r"[a-z']+", t.lower()) for t in texts]
        vocab = {w: k for k, w in enumerate(sorted({w for ws in words for w in ws}))}
        out = np.zeros((len(texts), len(vocab)), dtype=np.float32)
        for row, ws in enumerate(words):
            for w in ws:
                out[row, vocab[w]] += 1
        return out


@pytest.fixture(scope="module")
def minilm():
    from retrieval.embedder import load_embedder

    return load_embedder("bundled:all-minilm-l6-v2")


def test_order_agreement_hand_computed():
    # words after normalisation (articles dropped): how do i convert string to number / ... number to string;
    # 7 shared words, "string" and "number" swap around "to": 1 - 2/7
    assert order_agreement(*SWAPPED) == pytest.approx(5 / 7)
    assert order_agreement("Can a guest invite a member?", "Can a member invite a guest?") == pytest.approx(1 - 2 / 4)
    assert order_agreement(*PARAPHRASES[1]) == 1.0  # reordered around different words: roles kept
    assert order_agreement("password reset", "reset password") == 1.0  # adjacent: no connecting word to swap around
    assert order_agreement("", "anything") == 1.0


@pytest.mark.parametrize("embedder", ["minilm", "bag-of-words"])
def test_role_swapped_questions_are_not_near_duplicates(embedder, request):
    model = request.getfixturevalue("minilm") if embedder == "minilm" else BagOfWords()
    for evaluation, training in ROLE_SWAPS:
        vectors = np.asarray(model.encode([evaluation, training]), dtype=np.float64)
        cosine = vectors[0] @ vectors[1] / np.linalg.norm(vectors[0]) / np.linalg.norm(vectors[1])
        assert cosine > 0.98  # the embedding alone would call them copies
        assert find_overlaps([evaluation], [training], embedder=model) == [], (evaluation, training)


@pytest.mark.parametrize("embedder", ["minilm", "bag-of-words"])
def test_paraphrases_and_exact_copies_are_caught(embedder, request):
    model = request.getfixturevalue("minilm") if embedder == "minilm" else BagOfWords()
    pairs = PARAPHRASES if embedder == "minilm" else PARAPHRASES[3:]  # word counts see only shared words
    evals = [e for e, _ in pairs] + ["Where do I download the invoice?", SWAPPED[0]]
    train = [t for _, t in pairs] + [SWAPPED[1], "where do I download the INVOICE"]
    found = find_overlaps(evals, train, embedder=model)
    assert [(o.eval_index, o.train_question, o.kind) for o in found] == (
        [(k, t, "near-duplicate") for k, (_, t) in enumerate(pairs)]
        + [(len(pairs), "where do I download the INVOICE", "exact")])
    assert all(o.cosine >= NEAR_DUPLICATE_COSINE and o.order == 1.0 for o in found[:-1])
    assert [o.kind for o in find_overlaps(evals, train)] == ["exact"]  # without an embedder: exact copies only


@pytest.mark.parametrize("embedder", ["minilm", "bag-of-words"])
def test_questions_about_different_numbers_are_not_near_duplicates(embedder, request):
    model = request.getfixturevalue("minilm") if embedder == "minilm" else BagOfWords()
    pairs = [("How long do I hold the timer for program 3?", "How long do I hold the timer for program 7?"),
             ("Which Django version supports Python 3.12?", "Which Django version supports Python 3.10?")]
    for evaluation, training in pairs:
        assert find_overlaps([evaluation], [training], embedder=model) == [], (evaluation, training)
    same = "How long do I hold the timer for program 3?"
    [found] = find_overlaps([same], ["For program 3, how long do I hold the timer?"], embedder=model)
    assert found.kind == "near-duplicate"  # the same number, reworded: still a copy


def test_a_paraphrase_wins_over_a_closer_role_swap(minilm):
    # the swap has the higher cosine (0.995 vs the paraphrase's lower one), the paraphrase is the real copy
    train = [SWAPPED[1], "What is the way to convert a string to a number?"]
    [found] = find_overlaps([SWAPPED[0]], train, embedder=minilm)
    assert found.train_question == train[1] and found.kind == "near-duplicate"


def test_warning_shows_both_questions_and_both_figures(minilm):
    evals = [PARAPHRASES[0][0], SWAPPED[0], "How do I cancel my order?"]
    train = [PARAPHRASES[0][1], SWAPPED[1], "how do I cancel my order"]
    lines = overlap_warnings("faq-lora", find_overlaps(evals, train, embedder=minilm), len(evals))
    assert "trained on 2 of 3 evaluation questions" in lines[0] and "faq-lora" in lines[0]
    assert re.fullmatch(r"  eval #1 'How do I reset my password\?' ~ training \"What's the way to reset my "
                        r"password\?\" \(near-duplicate: embedding cosine 0\.9\d, word-order agreement 1\.00\)",
                        lines[1]), lines[1]
    assert lines[2].endswith("(exact copy after normalisation)") and "How do I cancel my order?" in lines[2]
    assert len(lines) == 3  # the swapped pair is not among them


def test_decide_drops_training_pairs_that_copy_or_paraphrase_an_evaluation_question(tmp_path):
    from assistant.decide.config import DecideConfig
    from assistant.decide.stages import DecideRun
    from foundation.records import read_jsonl
    from foundation.settings import Settings

    evals = [{"question": e, "answer": "a"} for e, _ in PARAPHRASES[:2]] + [{"question": SWAPPED[0], "answer": "a"}]
    qa = ([{"question": t, "answer": "b"} for _, t in PARAPHRASES[:2]]
          + [{"question": SWAPPED[1], "answer": "b"}, {"question": "How DO I reset my password", "answer": "c"},
             {"question": "What colour is the sky?", "answer": "blue"}])
    for name, rows in (("eval", evals), ("qa", qa)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = DecideConfig(qa=str(tmp_path / "qa.jsonl"), eval=str(tmp_path / "eval.jsonl"), name="leak")
    decide_run = DecideRun(cfg, Settings(data_dir=tmp_path / "data", device="cpu"))
    out = tmp_path / "stage"
    out.mkdir()
    info = decide_run.evalset(None, out, sources=[])
    kept = [p["question"] for p in read_jsonl(out / "train_pairs.jsonl")]
    assert kept == [SWAPPED[1], "What colour is the sky?"] and info.dropped_leaks == 3
