"""Near-duplicate thresholds of the leakage guard (foundation/leakage.py), measured on question pairs.

Three kinds of pair, each scored with the MiniLM embedding cosine, the word-order agreement of leakage.py and,
for comparison, difflib's SequenceMatcher ratio over the words:
- paraphrases: the espresso FAQ's titles against the user questions written for them (benchmarks/retrieval_faq.py,
  only the pairs of two questions) and the hand-written paraphrases of PARAPHRASES below;
- role swaps: the same words with two of them exchanged around a connecting word (opposite questions);
- distinct: questions on one topic that ask different things.
Prints one row per pair and the range per kind. Run: .venv/bin/python benchmarks/leakage.py
"""

from __future__ import annotations

import sys
from difflib import SequenceMatcher
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PARAPHRASES = [
    ("How do I reset my password?", "What's the way to reset my password?"),
    ("How long does the battery warranty last?", "What is the warranty period for the battery?"),
    ("How can I cancel my subscription?", "How do I cancel my subscription?"),
    ("Where can I download my invoice?", "Where do I download the invoice?"),
    ("How do I move files from my laptop to the server?", "How do I move files to the server from my laptop?"),
    ("Can I pay with card and cash?", "Can I pay with cash and card?"),
    ("How do I change my email address?", "How can I update the email address on my account?"),
    ("What are the opening hours of the shop?", "When is the shop open?"),
    ("Is there a student discount?", "Do you offer a discount for students?"),
    ("How do I delete my account?", "How can I delete my account permanently?"),
]
ROLE_SWAPS = [
    ("How do I convert a string to a number?", "How do I convert a number to a string?"),
    ("How do I transfer money from savings to checking?", "How do I transfer money from checking to savings?"),
    ("Is Python faster than Java?", "Is Java faster than Python?"),
    ("Can a guest invite a member?", "Can a member invite a guest?"),
    ("How do I convert Celsius to Fahrenheit?", "How do I convert Fahrenheit to Celsius?"),
    ("Can I upgrade from the basic plan to the pro plan?", "Can I upgrade from the pro plan to the basic plan?"),
]
DISTINCT = [
    ("How do I reset my password?", "How do I reset the router to factory settings?"),
    ("Where do I download the invoice?", "How long does the battery warranty last?"),
    ("How do I change my email address?", "How do I change my delivery address?"),
]


def faq_pairs() -> list[tuple[str, str]]:
    from benchmarks.retrieval_faq import ENTRIES

    return [(title, question) for title, _, question, _ in ENTRIES if question.endswith("?")]


def word_ratio(a: str, b: str) -> float:
    from foundation.metrics import tokens

    return SequenceMatcher(None, tokens(a), tokens(b), autojunk=False).ratio()


def main() -> None:
    from foundation.leakage import NEAR_DUPLICATE_COSINE, NEAR_DUPLICATE_ORDER, order_agreement
    from foundation.metrics import unit_rows
    from retrieval.embedder import load_embedder

    embedder = load_embedder("bundled:all-minilm-l6-v2")
    kinds = {"paraphrase": PARAPHRASES + faq_pairs(), "role swap": ROLE_SWAPS, "distinct": DISTINCT}
    print(f"thresholds: cosine >= {NEAR_DUPLICATE_COSINE}, order >= {NEAR_DUPLICATE_ORDER}")
    for kind, pairs in kinds.items():
        rows = []
        for a, b in pairs:
            v = unit_rows(embedder.encode([a, b]))
            rows.append((float(v[0] @ v[1]), order_agreement(a, b), word_ratio(a, b), a, b))
        print(f"\n{kind} ({len(rows)} pairs)   cosine  order  word-ratio  near-duplicate")
        for cos, order, ratio, a, b in rows:
            dup = cos >= NEAR_DUPLICATE_COSINE and order >= NEAR_DUPLICATE_ORDER
            print(f"  {cos:.3f}  {order:.2f}  {ratio:.2f}  {'yes' if dup else 'no ':3}  {a} | {b}")
        for name, k in (("cosine", 0), ("order", 1), ("word-ratio", 2)):
            print(f"  {name}: {min(r[k] for r in rows):.3f} .. {max(r[k] for r in rows):.3f}")


if __name__ == "__main__":
    main()
