"""Paraphrase augmentation: the similarity band, dedup, the content-hash cache, and the rows it adds."""

from __future__ import annotations

import pytest

from assistant.runtime import Runtime
from foundation.row_cache import RowCache
from foundation.settings import Settings
from training.augment import BAND, ParaphraseSettings, augment_rows, engine_generate, keep_paraphrases
from training.augment import sample_paraphrases as sample
from training.config import JobConfig
from training.data import chat

QUESTION = "How do I descale the espresso machine?"


@pytest.fixture(scope="module")
def embedder():
    from retrieval.embedding import Embedder

    return Embedder.load("bundled:all-minilm-l6-v2")


def test_band_keeps_paraphrases_and_drops_copies_off_topic_and_duplicates(embedder):
    samples = ["How do I descale the espresso machine?",  # the question itself
               "how do I descale the espresso machine",  # the same after normalisation
               "How do I descale my espresso machine?",  # a near copy: cosine 0.99 > 0.97
               "Question: What is the way to remove limescale from the espresso machine?",  # kept, label cut
               "What is the way to remove limescale from the espresso machine?",  # duplicate of the previous
               "Descaling the espresso maker: how is it done?\nSure! Here it is.",  # kept, first line only
               "How do I clean the milk frother?",  # another question of the same manual
               "What is the capital of France?"]  # off-topic
    kept = keep_paraphrases(QUESTION, samples, embedder.encode)
    assert kept == ["What is the way to remove limescale from the espresso machine?",
                    "Descaling the espresso maker: how is it done?"]
    # The band decides: widen the top and the near copy is in; raise the bottom and the far paraphrase is out.
    assert "How do I descale my espresso machine?" in keep_paraphrases(QUESTION, samples, embedder.encode,
                                                                         (BAND[0], 1.0))
    assert keep_paraphrases(QUESTION, samples, embedder.encode, (0.8, BAND[1])) == [
        "Descaling the espresso maker: how is it done?"]
    assert keep_paraphrases(QUESTION, [], embedder.encode) == []


def test_samples_are_cached_by_content_and_not_generated_twice(tiny_loaded, data_dir):
    runtime = Runtime(Settings(data_dir=data_dir), tiny_loaded)
    real, calls = engine_generate(runtime.engine), []

    def generate(prompts, gen):  # the real engine, counted
        calls.append(len(prompts))
        return real(prompts, gen)

    questions = ["Color of item 1?", "Color of item 2?", "Color of item 1?", "Size of box 3?",
                 "Where is dock 5?", "Who signs form 7?"]
    ps = ParaphraseSettings(k=2, model="tiny-llama", max_new_tokens=6)
    first = sample(questions, ps, generate, RowCache.in_data_dir(data_dir))
    assert sum(calls) == 2 * 5 and all(len(s) == 2 for s in first)  # 5 distinct questions x K
    assert first[0] == first[2]  # one question, one key
    calls.clear()
    again = sample(questions, ps, generate, RowCache.in_data_dir(data_dir))  # a new job: same data folder
    assert again == first and calls == []
    sample(questions[:1], ParaphraseSettings(k=3, model="tiny-llama", max_new_tokens=6), generate,
           RowCache.in_data_dir(data_dir))
    assert calls == [3]  # another K is another key: generated, and only for that question


def test_augment_rows_copy_answer_and_system_turn_and_skip_grounded(embedder, data_dir):
    from foundation.variants import RAG_INSTRUCTION
    rows = [chat(QUESTION, "Run the descaling program.", system="Be brief."),
            chat("What is the capital of France?", "Paris."),
            chat("Which passage?", "The first. [1]", system=RAG_INSTRUCTION + "\n\nPassages: ...")]
    written = {QUESTION: ["What is the way to remove limescale from the espresso machine?", QUESTION],
               "What is the capital of France?": ["Which city is the capital of France?", "Where is Lyon?"]}

    def generate(prompts, gen):  # stands in for the model's samples: the row building is under test here
        return [written[next(q for q in written if q in p[0]["content"])][i % 2] for i, p in enumerate(prompts)]

    out, stats = augment_rows(rows, ParaphraseSettings(k=2, model="fixed"), generate, embedder.encode,
                              RowCache.in_data_dir(data_dir))
    assert out[:3] == rows and stats == {"questions": 2, "samples": 4, "kept": len(out) - 3}
    added = out[3:]
    assert added[0].messages == [{"role": "system", "content": "Be brief."},
                                 {"role": "user", "content": written[QUESTION][0]},
                                 {"role": "assistant", "content": "Run the descaling program."}]
    assert all("paraphrase" in ex.origin for ex in added)
    assert not any("passage" in ex.question().lower() for ex in added)  # grounded rows are not paraphrased


def test_augment_spec_is_checked():
    from foundation.errors import ArenaError

    for bad in ("paraphrases", "paraphrases:0", "synonyms:3", "paraphrases:x"):
        with pytest.raises(ArenaError, match="paraphrases:K"):
            JobConfig(data=[{"path": "x"}], augment=bad).validate()
    JobConfig(data=[{"path": "x"}], augment="paraphrases:5").validate()


def test_samples_stop_at_their_first_line(tiny_tokenizer, data_dir):
    """Only a sample's first line is read (clean), so decoding stops there: a model that writes line after line
    gives one-line samples, far shorter than the token limit, through the real engine."""
    import torch

    from assistant.inference.torch_engine import Engine
    from foundation.models import LoadedModel
    from tests.looping_model import CYCLE, make_looping_model

    model = make_looping_model(tiny_tokenizer, CYCLE + "\n")
    engine = Engine(LoadedModel(model, tiny_tokenizer, "lines", "<memory>", torch.float32, torch.device("cpu")))
    greedy = ParaphraseSettings(k=2, model="lines", max_new_tokens=40, temperature=0.0)  # the crafted path only
    samples = sample(["Color of item 1?"], greedy, engine_generate(engine), RowCache.in_data_dir(data_dir))
    assert samples == [[CYCLE + "\n", CYCLE + "\n"]]


def test_k_samples_of_one_question_differ_on_the_torch_engine(tiny_loaded, data_dir):
    """The K rows of a question share one prompt: each must sample with its own seed, or K paraphrases are one."""
    runtime = Runtime(Settings(data_dir=data_dir), tiny_loaded)
    ps = ParaphraseSettings(k=4, model="tiny-llama", max_new_tokens=8)
    samples = sample(["Color of item 1?"], ps, engine_generate(runtime.engine), RowCache.in_data_dir(data_dir))
    assert len(set(samples[0])) == 4
    again = sample(["Color of item 1?"], ps, engine_generate(runtime.engine), RowCache.in_data_dir(data_dir / "b"))
    assert again == samples  # still reproducible: the same call gives the same samples
