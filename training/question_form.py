"""Is this a question a user would ask? Text checks shared by the heading/definition heuristic and the
question generator (training/questions.py): fragments and ill-formed questions, questions that lean on a
passage the user never sees, and an order-aware check for near-duplicates.

Each check returns the reason it fails (a short label the reports count), or None when the question passes.
"""

from __future__ import annotations

import re

from foundation.metrics import content_tokens

QUESTION_WORDS = ("how", "what", "why", "when", "where", "which", "who", "whom", "whose", "can", "could", "do",
                  "does", "did", "is", "are", "was", "were", "should", "may", "will", "would", "has", "have")
# After "What is/are", a word of these classes means the "term" was the head of a sentence, not a thing:
# "What is When a URL?", "What is For EventTargets this?", "What is Each item of the iterator?".
FUNCTION_WORDS = frozenset(
    # subordinating conjunctions and sentence adverbs
    "when whenever if unless because although though while whereas since as once until after before where "
    "whether so however therefore thus also otherwise instead then "
    # prepositions
    "for in on at by with without from to into of about under over between through during per via "
    # pronouns and determiners other than a/an/the
    "this that these those it its they them their he she we you i each every all some any both either neither "
    "no none such another other most many few several there here".split())
WHAT_IS = re.compile(r"^what\s+(?:is|are)\s+(?P<term>.+?)\??$", re.IGNORECASE)
# The question refers to a text the person asking never saw.
PASSAGE = re.compile(r"\b(according to|based on|in|from|per|as (?:stated|described|mentioned) in) (the|this|that|"
                     r"above|given|provided) (passage|text|document|context|excerpt|section|paragraph|article|"
                     r"chunk|snippet)s?\b|\b(the|this) (passage|excerpt|snippet|context)\b|\b(above|below)\b|"
                     r"\b(the|this) (text|document|section|article|author)s? (say|mention|describe|state|suggest)",
                     re.IGNORECASE)
# A pronoun as the question's subject with nothing in the question for it to refer to.
LEADING_PRONOUN = re.compile(r"^(?:(?:how|what|why|when|where|which)\s+(?:\w+\s+){0,2}?)?"
                             r"(?:does|do|is|are|was|were|can|should|will|would|did)\s+"
                             r"(it|they|this|these|those|that|he|she|its|their)\b", re.IGNORECASE)
MIN_WORDS = 4
META = re.compile(r"\banswer to (?:the|this) question\b|\b(factual|how-to) question\b|\bquestion that\b|\bthe text'?s?\b",
                  re.IGNORECASE)


def malformed_reason(question: str) -> str | None:
    """Why `question` is no well-formed question ("too short", "not a question", "fragment", "vague"), else
    None."""
    q = " ".join(question.split())
    words = q.rstrip("?").split()
    if len(words) < MIN_WORDS or len(content_tokens(q)) < 1:
        return "too short"
    if not q.endswith("?") and words[0].lower() not in QUESTION_WORDS:
        return "not a question"
    what = WHAT_IS.match(q)
    if what and what.group("term").split()[0].lower() in FUNCTION_WORDS:
        return "fragment"
    if what and re.fullmatch(r"the \S+", what.group("term"), re.IGNORECASE):
        return "vague"  # "What is the value?": which value is said in a sentence the question never shows
    if re.search(r"\b(what|how) (is|are|does|do) (when|if|because|although|while)\b", q, re.IGNORECASE):
        return "fragment"
    if META.search(q):
        return "about the task"  # the generator echoed its instructions: "What is the answer to the question: ..."
    return None


def standalone_reason(question: str) -> str | None:
    """Why `question` does not stand alone ("mentions the passage", "pronoun without referent"), else None.

    A pronoun is fine once the question has named something before it ("How do I install Flask and what does
    it need?"); it is a missing referent only as the subject right after the question's opening words."""
    q = " ".join(question.split())
    if PASSAGE.search(q):
        return "mentions the passage"
    if LEADING_PRONOUN.match(q):
        return "pronoun without referent"
    return None

