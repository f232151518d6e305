"""Batched reference NLL (Engine.nll_many, Arena.reference_nll_many) equals one row at a time, and the probes'
base-model NLLs are cached by content so a second run scores only the adapter half."""

from __future__ import annotations

import random

import pytest

from assistant.compare.config import CompareConfig
from assistant.compare.forgetting import TEXT_PROMPT
from assistant.comparison import ProbeBaseCache, adapter_probes, arena_scorer, model_identity
from assistant.inference import torch_engine
from assistant.inference.torch_engine import Engine, nll_batches
from assistant.runtime import Runtime
from foundation.errors import ArenaError
from foundation.registry import AdapterRegistry
from foundation.settings import Settings
from foundation.variants import VariantConfig
from tests.conftest import make_lora


@pytest.fixture
def engine(tiny_loaded, tiny_model_dir, tmp_path):
    engine = Engine(tiny_loaded)
    for i in (1, 2):
        engine.load_adapter(f"a{i}", make_lora(tiny_loaded.model, tmp_path / f"a{i}", i))
    engine.load_adapter("full", tiny_model_dir)  # a full model folder: its own model, scored row by row
    return engine


def _rows(engine, adapters) -> list:
    """Chat prompts of 1 to 40 words and references of 1 to 30 tokens, each with one of `adapters`."""
    rng = random.Random(0)
    words = "the bolt takes twenty five newton metres when the engine is cold and dry".split()
    rows = []
    for n in range(12):
        prompt = " ".join(rng.choice(words) for _ in range(1 + 3 * n + rng.randrange(4)))
        reference = engine.tokenizer(" ".join(rng.choice(words) for _ in range(8)),
                                     add_special_tokens=False)["input_ids"][:1 + rng.randrange(30)]
        rows.append((engine.chat_ids([{"role": "user", "content": prompt}]), reference, adapters[n % len(adapters)]))
    return rows


@pytest.mark.parametrize("adapters", [[None], ["a1"], [None, "a1", "a2", "full"]], ids=["base", "lora", "mixed"])
@pytest.mark.parametrize("budget", [torch_engine.NLL_BATCH_TOKENS, 300], ids=["one-batch", "small-batches"])
def test_batched_nll_equals_one_by_one(engine, adapters, budget, monkeypatch):
    monkeypatch.setattr(torch_engine, "NLL_BATCH_TOKENS", budget)
    rows = _rows(engine, adapters)
    alone = [engine.nll(*row) for row in rows]
    batched = engine.nll_many(rows)
    assert max(abs(a - b) for a, b in zip(alone, batched, strict=True)) < 1e-4
    assert len(set(alone)) == len(rows)  # the rows really differ: the comparison is not vacuous


def test_the_rows_do_run_in_padded_batches():
    lengths = [30, 200, 31, 45, 1000, 5000, 32]
    batches = nll_batches(lengths, budget=300)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) * max(lengths[i] for i in b) <= 300 for b in batches if len(b) > 1)
    assert [0, 2, 3, 6] in [sorted(b) for b in batches] and [5] in batches  # short rows together, a long one alone


def test_an_empty_reference_is_refused_by_name(engine, tiny_loaded, data_dir):
    rows = _rows(engine, [None])
    with pytest.raises(ArenaError, match="reference answer is empty"):
        engine.nll_many(rows[:2] + [(rows[2][0], [], None)])
    arena = Runtime(Settings(data_dir=data_dir, engine="torch"), tiny_loaded, engine=engine).arena
    prepared = arena.prepare("torque?", ["base"], VariantConfig())
    with pytest.raises(ArenaError, match="reference answer is empty"):
        arena.reference_nll_many([(prepared, "25 Nm"), (prepared, "  ")])
    with pytest.raises(ArenaError, match="'nope' is not loaded"):
        engine.nll_many([(rows[0][0], rows[0][1], "nope")])


def test_arena_reference_nll_many_equals_each_question_alone(engine, tiny_loaded, data_dir, tmp_path):
    AdapterRegistry(data_dir).register("tiny-lora", make_lora(tiny_loaded.model, tmp_path / "reg", 3),
                                       {"method": "lora", "peft_type": "LORA"}, ["q"])
    arena = Runtime(Settings(data_dir=data_dir, engine="torch"), tiny_loaded, engine=engine).arena
    cfg = VariantConfig(system_prompt="Be brief.", adapter="tiny-lora")
    asks = [(arena.prepare(q, ["base", "prompt", "finetuned"], cfg), a)
            for q, a in [("torque for M8?", "25 Nm"), ("reset?", "Hold reset for five seconds."), ("hi", "hello")]]
    together = arena.reference_nll_many(asks)
    for (prepared, reference), scores in zip(asks, together, strict=True):
        alone = {name: engine.nll(engine.chat_ids(p.messages),
                                  engine.tokenizer(reference, add_special_tokens=False)["input_ids"], p.adapter)
                 for name, p in prepared.items()}
        assert set(scores) == {"base", "prompt", "finetuned"} and scores == pytest.approx(alone, abs=1e-4)


# ---------------------------------------------------------------- the probes' base half, cached


class CountingEngine(Engine):
    """The torch engine, recording the adapter of every row it is asked to score."""

    def __init__(self, loaded):
        super().__init__(loaded)
        self.scored: list[str | None] = []

    def nll_many(self, rows):
        self.scored += [adapter for _, _, adapter in rows]
        return super().nll_many(rows)


@pytest.fixture
def probe_runtime(tiny_loaded, data_dir, tmp_path):
    AdapterRegistry(data_dir).register("tiny-lora", make_lora(tiny_loaded.model, tmp_path / "lora", 1),
                                       {"method": "lora", "peft_type": "LORA"}, ["q"])

    def make() -> Runtime:  # a fresh process: a new runtime and engine on the same data folder
        return Runtime(Settings(data_dir=data_dir, engine="torch"), tiny_loaded, engine=CountingEngine(tiny_loaded))
    return make


def _probes(runtime):
    cfg = CompareConfig(adapter="tiny-lora", variants=("base", "finetuned"))
    return adapter_probes(runtime, cfg, VariantConfig(), list(cfg.variants), lambda f, t: None)


def test_second_run_scores_only_the_adapter_half(probe_runtime, data_dir):
    first_runtime, second_runtime = probe_runtime(), probe_runtime()
    first = _probes(first_runtime)
    scored = first_runtime.engine.scored
    assert scored.count(None) == scored.count("tiny-lora") > 50  # first run: base and adapter, every pair
    assert (data_dir / "cache" / "probe_nll.sqlite").is_file()
    second = _probes(second_runtime)
    assert set(second_runtime.engine.scored) == {"tiny-lora"}
    assert len(second_runtime.engine.scored) == scored.count("tiny-lora")
    assert second == first and first[0][0].probes["general_qa"].base_ppl > 0


def test_a_corrupt_probe_cache_is_ignored_and_rewritten(probe_runtime, data_dir):
    pairs = [("What is the capital of France?", "Paris."), (TEXT_PROMPT, "It rained all day, so we stayed in.")]

    def score(runtime):
        cache = ProbeBaseCache(data_dir, model_identity(runtime))
        return arena_scorer(runtime.arena, VariantConfig(), "tiny-lora", cache)(pairs)

    first = score(probe_runtime())
    cache = data_dir / "cache" / "probe_nll.sqlite"
    cache.write_bytes(b"not a database at all" * 100)
    again = probe_runtime()
    assert score(again) == first and again.engine.scored.count(None) == 2  # the base half scored again
    third = probe_runtime()
    assert score(third) == first and None not in third.engine.scored  # ... and stored again
