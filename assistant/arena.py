"""The Arena: builds each variant's prompt, resolves adapters and documents, and runs them all at once."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from assistant.compare.router import cached_router
from assistant.inference.base import Engine, last
from foundation.errors import ArenaError
from foundation.generation import Answer, GenSettings, Row, RowOutput
from foundation.variants import (
    ADAPTER_VARIANTS,
    NO_ADAPTER,
    NO_DOCUMENTS,
    RAG_VARIANTS,
    ROUTED,
    VariantConfig,
    base_messages,
    check_few_shot,
    display_order,
    fit_hits,
    parse_variants,
    pick_few_shot,
    prompt_messages,
    rag_budget,
    rag_messages,
    truncate_question,
)


@dataclass
class Prepared:
    """What one variant will send to the model; `error` set means the column cannot run."""

    messages: list[dict]
    adapter: str | None
    sources: list = field(default_factory=list)
    notice: str = ""
    error: str = ""


class Arena:
    """The one object the UI, the CLI `ask` and the comparison use to run variants side by side."""

    def __init__(self, *, engine: Callable[[], Engine], store: Callable, registry: Callable, embedder: Callable,
                 data_dir: Path, embedder_name: str, embed: Callable | None = None):
        """Narrow parts, not the runtime: `engine`, `store` (documents), `registry` (adapters) and `embedder` are
        called for their object on first use, so nothing loads before a variant needs it; `data_dir` and
        `embedder_name` locate the router's cache; `embed` overrides the embedder's encode (tests, few-shot)."""
        self._engine, self._store, self._registry, self._embedder = engine, store, registry, embedder
        self._data_dir, self._embedder_name, self._embed = data_dir, embedder_name, embed

    @property
    def engine(self) -> Engine:
        return self._engine()

    def embed(self, texts: list[str]):
        if self._embed is None:
            try:
                self._embed = self._embedder().encode
            except ArenaError as exc:
                raise ArenaError(f"dynamic few-shot needs the embedder, which could not load ({exc}); "
                                 "set k to 0") from exc
        return self._embed(texts)

    def prepare(self, question: str, variants, cfg: VariantConfig, history=None,
                gen: GenSettings | None = None) -> dict[str, Prepared]:
        """Each variant's messages, adapter and sources for one question (no generation)."""
        gen = gen or GenSettings()
        question, notice = truncate_question(question, self.engine.context_length // 4,
                                             self.engine.count_tokens)
        names = parse_variants(",".join(variants))
        hits = self._retrieve(question, cfg) if RAG_VARIANTS & set(names) else None
        adapter, adapter_error = self._adapter(cfg) if ADAPTER_VARIANTS & set(names) else (None, "")
        out = {}
        for name in names:
            hist = (history or {}).get(name) if isinstance(history, dict) else history
            if name == ROUTED:
                out[name] = self._prepare_routed(question, cfg, hist, gen)
            else:
                out[name] = self._prepare_one(name, question, cfg, hist, gen, hits, adapter, adapter_error)
            out[name].notice = "; ".join(filter(None, [notice, out[name].notice]))
        return out

    def _prepare_routed(self, question, cfg, history, gen) -> Prepared:
        """The prompt of the variant the router ranks first among those that can run, saying which it is."""
        try:
            router = cached_router(self._data_dir, self.embed, self._embedder_name)
            ranked = router.rank(self.embed([question]))[0]
        except ArenaError as exc:
            return Prepared([], None, error=str(exc))
        errors = []
        for variant, probability in ranked:
            prepared = self.prepare(question, [variant], cfg, history, gen)[variant]
            if not prepared.error:
                prepared.notice = "; ".join(filter(None, [f"router picked {variant} ({probability:.0%})",
                                                          prepared.notice]))
                return prepared
            errors.append(f"{variant}: {prepared.error}")
        return Prepared([], None, error="the router's variants cannot run (" + "; ".join(errors) + ")")

    def _prepare_one(self, name, question, cfg, history, gen, hits, adapter, adapter_error) -> Prepared:
        if name in ADAPTER_VARIANTS and adapter_error:
            return Prepared([], None, error=adapter_error)
        if name in RAG_VARIANTS and isinstance(hits, str):
            return Prepared([], None, error=hits)
        use_adapter = adapter if name in ADAPTER_VARIANTS else None
        if name == "prompt":
            shots = check_few_shot(cfg.few_shot)
            if cfg.dynamic_k > 0:
                shots = pick_few_shot(question, shots, cfg.dynamic_k, self.embed)
            return Prepared(prompt_messages(question, cfg.system_prompt, shots, history), None)
        if name in RAG_VARIANTS:
            return self._prepare_rag(question, history, gen, hits, use_adapter)
        return Prepared(base_messages(question, history), use_adapter)

    def _prepare_rag(self, question, history, gen, hits, adapter) -> Prepared:
        fixed = len(self.engine.chat_ids(rag_messages(question, [], history)))
        budget = rag_budget(self.engine.context_length, gen.max_new_tokens, fixed)
        kept, notice = fit_hits(hits, budget, self.engine.count_tokens)
        kept = display_order(kept)  # the sources list keeps the prompt's [n] numbering
        return Prepared(rag_messages(question, kept, history), adapter, kept, notice)

    def _retrieve(self, question: str, cfg: VariantConfig):
        """Top-k hits, or the message to show when there is nothing to retrieve from."""
        try:
            store = self._store()
            if store.is_empty():
                return NO_DOCUMENTS
            return store.search(question, k=cfg.rag_k, mode=cfg.rag_mode)
        except ArenaError as exc:  # e.g. the embedder cannot load: show it in the RAG columns only
            return f"retrieval unavailable: {exc}"

    def _adapter(self, cfg: VariantConfig) -> tuple[str | None, str]:
        """(adapter name loaded in the engine, error message to show instead)."""
        registry = self._registry()
        if not registry.list():
            return None, NO_ADAPTER
        if not cfg.adapter:
            return None, "no adapter selected — pick one in the adapter dropdown (--adapter NAME in the CLI)"
        info = registry.get(cfg.adapter)  # ArenaError naming the unknown adapter and the available ones
        if info.kind != "adapter":
            return None, f"{info.name!r} is a {info.kind} model (it scores answers): pick a chat adapter"
        self.engine.load_adapter(info.name, info.path)
        return info.name, ""

    def stream(self, question, variants, cfg: VariantConfig, gen: GenSettings,
               histories=None) -> Iterator[dict[str, Answer]]:
        """Yield growing answers for all variants at once."""
        gen.check(self.engine.context_length)
        prepared = self.prepare(question, variants, cfg, histories, gen)
        runnable = [n for n, p in prepared.items() if not p.error]
        rows = self.rows(prepared, runnable, gen)
        answers = {n: _answer(n, p, RowOutput(done=bool(p.error)), 0) for n, p in prepared.items()}
        if not rows:
            yield answers
            return
        for outs in self.engine.stream(rows, gen):
            for name, row, out in zip(runnable, rows, outs, strict=True):
                answers[name] = _answer(name, prepared[name], out, len(row.input_ids))
            yield dict(answers)

    def rows(self, prepared: dict[str, Prepared], names: list[str], gen: GenSettings) -> list[Row]:
        """The engine rows of the named variants (streamed here, queued by the ship API); refuses a prompt that
        leaves no room for the answer."""
        rows = [Row(self.engine.chat_ids(prepared[n].messages), prepared[n].adapter) for n in names]
        for name, row in zip(names, rows, strict=True):
            if len(row.input_ids) + gen.max_new_tokens > self.engine.context_length:
                raise ArenaError(f"the {name} prompt ({len(row.input_ids)} tokens) plus {gen.max_new_tokens} new "
                                 f"tokens exceeds the model's context of {self.engine.context_length}; "
                                 "start a new conversation or lower max new tokens")
        return rows

    def ask(self, question, variants, cfg: VariantConfig, gen: GenSettings) -> dict[str, Answer]:
        return last(self.stream(question, variants, cfg, gen))  # the finished answers

    def ask_many(self, questions: list[str], variants, cfg, gen, progress=None,
                 on_answer=None) -> list[dict[str, Answer]]:
        """Answers to each question in order; `progress(done, total)` is called as questions complete.

        Every question's rows go to the engine in one call, so it keeps a pool of rows in flight across
        questions. Contract for any batching: `on_answer(index, answers)` is called as soon as every variant
        of question `index` has finished, so callers persist it then (comparison resume, distillation cache).
        """
        gen.check(self.engine.context_length)
        prepared = [self.prepare(q, variants, cfg, None, gen) for q in questions]
        results = [{n: _answer(n, p, RowOutput(done=bool(p.error)), 0) for n, p in prep.items()} for prep in prepared]
        rows, owners = [], []  # owners[k] = (question index, variant) of rows[k]
        for qi, prep in enumerate(prepared):
            names = [n for n, p in prep.items() if not p.error]
            rows += self.rows(prep, names, gen)
            owners += [(qi, n) for n in names]
        left = [sum(1 for q, _ in owners if q == qi) for qi in range(len(questions))]
        completed = 0

        def complete(qi: int) -> None:
            nonlocal completed
            completed += 1
            if on_answer:
                on_answer(qi, results[qi])
            if progress:
                progress(completed, len(questions))

        for qi in (q for q, n in enumerate(left) if n == 0):  # nothing to generate (every variant errored)
            complete(qi)
        pending = set(range(len(rows)))
        for outs in self.engine.stream(rows, gen) if rows else ():
            for k in [k for k in pending if outs[k].done]:
                pending.discard(k)
                qi, name = owners[k]
                results[qi][name] = _answer(name, prepared[qi][name], outs[k], len(rows[k].input_ids))
                left[qi] -= 1
                if left[qi] == 0:
                    complete(qi)
        return results

    def rag_prompt(self, question: str, cfg: VariantConfig, gen: GenSettings) -> tuple[list[dict], str | None]:
        """The RAG variant's messages as sent and its adapter (distillation keys its cached answers by them)."""
        prepared = self.prepare(question, ["rag"], cfg, gen=gen)["rag"]
        if prepared.error:
            raise ArenaError(f"distillation needs the RAG variant: {prepared.error}")
        return prepared.messages, prepared.adapter

    def rag_answers(self, questions: list[str], cfg: VariantConfig, gen: GenSettings, progress,
                    on_answer: Callable[[int, str], None]) -> None:
        """The RAG variant's answer text to each question, handed to `on_answer(index, text)` as it finishes."""
        self.ask_many(questions, ["rag"], cfg, gen, progress=progress,
                      on_answer=lambda j, answers: on_answer(j, answers["rag"].text))

    def reference_nll(self, prepared: dict[str, Prepared], reference: str) -> dict[str, float]:
        """Mean per-token NLL of `reference` as the reply under each runnable variant's prompt and adapter."""
        return self.reference_nll_many([(prepared, reference)])[0]

    def reference_nll_many(self, asks: list[tuple[dict[str, Prepared], str]]) -> list[dict[str, float]]:
        """`reference_nll` of every (prepared variants, reference) pair, scored in one engine call (the engine
        batches what it can: Engine.nll_many)."""
        engine = self.engine
        rows, names = [], []
        for k, (prepared, reference) in enumerate(asks):
            ref_ids = engine.tokenizer(reference.strip(), add_special_tokens=False)["input_ids"]
            if not ref_ids:
                raise ArenaError("reference answer is empty")
            for name, p in prepared.items():
                if not p.error:
                    rows.append((engine.chat_ids(p.messages), ref_ids, p.adapter))
                    names.append((k, name))
        out: list[dict[str, float]] = [{} for _ in asks]
        for (k, name), score in zip(names, engine.nll_many(rows), strict=True):
            out[k][name] = score
        return out


def _answer(name: str, prep: Prepared, out: RowOutput, prompt_tokens: int) -> Answer:
    return Answer(name, out.text, prep.sources, round(out.ttft_s, 3), len(out.tokens),
                  round(out.tokens_per_s, 2), prompt_tokens, prep.messages, prep.adapter,
                  prep.notice, prep.error, out.done)
