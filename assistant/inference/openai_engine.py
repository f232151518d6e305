"""Generation on an OpenAI-compatible server (vLLM, llama.cpp server, Ollama, ...): the scale-out engine.

Rows are sent to the server's /v1/completions with the prompt this product rendered (the same chat template
and RAG context as the in-process engines): as token ids where the server takes them (vLLM, llama.cpp's own
server), else as the decoded text (llama-cpp-python, Ollama). A row's `model` is the served base model, or
the adapter's registry name for adapter rows. Rows go out `concurrency` at a time and stream back token by
token; the `openai` client retries 429/5xx and connection errors with exponential backoff. Tokenizer, chat
template and context length come from the local copy of `settings.model` (weights are not loaded).
Nothing is sent anywhere unless the user configured the URL (`--engine openai --engine-url URL`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from assistant.inference.base import (
    AdapterSlot,
    Templating,
    adapter_peft_type,
    check_rows,
    end_early,
    eos_token_ids,
    pooled_stream,
)
from foundation.errors import ArenaError
from foundation.generation import GenSettings, Row, RowOutput

NO_LOAD_STATUSES = {404, 405, 501}  # the server has no adapter-loading endpoint


@dataclass(frozen=True)
class ServerConfig:
    """Where the serving engine is and how hard to push it."""

    url: str
    key_env: str = ""         # name of the environment variable holding the API key ("" = no key)
    concurrency: int = 4      # requests in flight at once
    timeout_s: float = 300.0  # per request (a long answer streams within it)
    max_retries: int = 4      # on 429, 5xx, timeouts and connection errors, with exponential backoff
    model: str = ""           # served base model; "" = the first model the server lists that is no adapter


def check_url(url: str) -> str:
    """The URL without a trailing slash, or ArenaError saying what is wrong with it."""
    parsed = urlparse(url.strip())
    if parsed.scheme not in {"http", "https"} or not parsed.netloc:
        raise ArenaError(f"engine URL must look like http://HOST:PORT/v1, got {url!r}")
    return url.strip().rstrip("/")


class ServerClient:
    """The `openai` client of one server, with errors that name the URL and the HTTP status."""

    def __init__(self, url: str, key_env: str = "", timeout_s: float = 300.0, max_retries: int = 4):
        from openai import OpenAI

        self.url = check_url(url)
        key = os.environ.get(key_env, "") if key_env else ""
        if key_env and not key:
            raise ArenaError(f"the API key variable {key_env} (--engine-key) is not set in the environment")
        if not 1 <= max_retries <= 20 or timeout_s <= 0:
            raise ArenaError(f"retries must be 1-20 and timeout positive, got {max_retries} and {timeout_s}")
        self.timeout_s = timeout_s
        self.client = OpenAI(base_url=self.url, api_key=key or "none", timeout=timeout_s, max_retries=max_retries)

    def error(self, exc: Exception, what: str) -> ArenaError:
        """A clear message for a failed request: URL, status and the server's own words."""
        import openai

        if isinstance(exc, openai.APIStatusError):
            body = exc.response.text.strip().replace("\n", " ")[:300]
            return ArenaError(f"serving engine at {self.url}: {what} failed with HTTP {exc.status_code}: {body}")
        if isinstance(exc, openai.APITimeoutError):
            return ArenaError(f"serving engine at {self.url}: {what} timed out after {self.timeout_s:g} s")
        if isinstance(exc, openai.APIConnectionError):
            return ArenaError(f"cannot reach the serving engine at {self.url} ({what}): {exc.__cause__ or exc}")
        return ArenaError(f"serving engine at {self.url}: {what} failed: {exc}")

    def call(self, what: str, fn, *args, **kwargs):
        import openai

        try:
            return fn(*args, **kwargs)
        except openai.OpenAIError as exc:
            raise self.error(exc, what) from exc

    def models(self) -> list[dict]:
        """The served models as the server lists them (vLLM adds `parent` to adapters, `max_model_len`)."""
        page = self.call("listing models (GET /models)", self.client.models.list)
        return [m.model_dump() for m in page.data]

    def chat(self, model: str, messages: list[dict], max_tokens: int, temperature: float = 0.0) -> str:
        """One non-streamed chat completion with the server's own chat template (the judge uses this)."""
        out = self.call(f"chat completion with model {model!r}", self.client.chat.completions.create,
                        model=model, messages=messages, max_tokens=max_tokens, temperature=temperature)
        return out.choices[0].message.content or ""

    def chat_many(self, model: str, conversations: list[list[dict]], max_tokens: int, temperature: float,
                  workers: int) -> list[str]:
        """`chat` for each conversation, `workers` requests in flight at once, replies in order."""
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            return list(pool.map(lambda m: self.chat(model, m, max_tokens, temperature), conversations))

    def load_lora(self, name: str, path: Path) -> bool:
        """POST /load_lora_adapter (vLLM); False when the server has no such endpoint."""
        import httpx
        import openai

        try:
            self.client.post("/load_lora_adapter", body={"lora_name": name, "lora_path": str(path)},
                             cast_to=httpx.Response)
        except openai.OpenAIError as exc:
            if isinstance(exc, openai.APIStatusError):
                if exc.status_code in NO_LOAD_STATUSES:
                    return False
                if "already" in exc.response.text.lower():  # vLLM: 400 "... has already been loaded"
                    return True
            raise self.error(exc, f"loading adapter {name!r} from {path}") from exc
        return True

    def unload_lora(self, name: str) -> None:
        """POST /unload_lora_adapter (vLLM); a server without the endpoint keeps serving what it serves."""
        import httpx
        import openai

        try:
            self.client.post("/unload_lora_adapter", body={"lora_name": name}, cast_to=httpx.Response)
        except openai.OpenAIError as exc:
            if not (isinstance(exc, openai.APIStatusError) and exc.status_code in NO_LOAD_STATUSES):
                raise self.error(exc, f"unloading adapter {name!r}") from exc


class OpenAIEngine(Templating):
    """The Engine interface (assistant/inference/base.py) over an OpenAI-compatible server."""

    name = "openai"

    def __init__(self, tokenizer, model_config, cfg: ServerConfig):
        if not 1 <= cfg.concurrency <= 256:
            raise ArenaError(f"engine concurrency must be 1-256, got {cfg.concurrency}")
        self.tokenizer, self.cfg = tokenizer, cfg
        self.server = ServerClient(cfg.url, cfg.key_env, cfg.timeout_s, cfg.max_retries)
        self.url = self.server.url
        self.slots: dict[str, AdapterSlot] = {}
        self.served = self.server.models()  # fails fast, before any run is stored, when the server is down
        self.base_model = cfg.model or _base_model(self.served, self.url)
        local = int(getattr(model_config, "max_position_embeddings", 0) or 2048)
        remote = next((m.get("max_model_len") for m in self.served if m["id"] == self.base_model), None)
        self.context_length = min(local, int(remote)) if remote else local
        self.eos_ids = eos_token_ids(tokenizer, model_config)
        self._ids_prompts: bool | None = None  # does the server take token-id prompts? learnt on first call
        self._lock = threading.Lock()
        self.nll_notice = ""  # set once the server proved it cannot score a reference

    def load_adapter(self, name: str, path: Path) -> AdapterSlot:
        """Make `name` servable: already served, or loaded through the server's adapter endpoint (vLLM)."""
        path = Path(path)
        slot = self.slots.get(name)
        if slot is not None and slot.path == path:
            return slot
        with self._lock:
            served = {m["id"] for m in self.server.models()}
            if slot is not None and name in served:  # re-trained under the same name: the server has the old one
                self.server.unload_lora(name)
                served = {m["id"] for m in self.server.models()}  # still listed: the server's own config serves it
            if name not in served and not self.server.load_lora(name, path.resolve()):
                raise ArenaError(
                    f"the serving engine at {self.url} does not serve a model named {name!r} and offers "
                    f"no adapter-loading endpoint (POST /v1/load_lora_adapter, vLLM with "
                    f"VLLM_ALLOW_RUNTIME_LORA_UPDATING=True); serve the adapter under that name "
                    f"(served: {', '.join(sorted(served))}) — see docs/scale-out.md")
            self.slots[name] = AdapterSlot(name, path, adapter_peft_type(path), "mixed")
            return self.slots[name]

    def stream(self, rows: list[Row], gen: GenSettings) -> Iterator[list[RowOutput]]:
        """Every row's growing output; rows are requested `concurrency` at a time, in order."""
        check_rows(rows, gen, self.context_length, self.slots)
        def run_row(i, gen, stop):
            return ((i, out) for out in self._row_outputs(rows[i], gen, stop))

        yield from pooled_stream(list(range(len(rows))), len(rows), self.cfg.concurrency, run_row, gen,
                                 f"serving engine at {self.url}")

    def _row_outputs(self, row: Row, gen: GenSettings, stop: threading.Event) -> Iterator[RowOutput]:
        model = row.adapter or self.base_model
        start, out, text, finish = time.perf_counter(), RowOutput(), "", None
        # the prompt as token ids, or as their text where the server takes no ids (_takes_ids)
        prompt = row.input_ids if self._takes_ids() else self.tokenizer.decode(row.input_ids, skip_special_tokens=False)
        stream = self.server.call(f"completion with model {model!r}", self.server.client.completions.create,
                                  model=model, prompt=prompt, max_tokens=gen.max_new_tokens,
                                  temperature=gen.temperature, top_p=gen.top_p, seed=gen.seed, stream=True,
                                  extra_body=_extra(gen))
        try:
            for chunk in stream:
                if stop.is_set():  # another row failed: a cut answer is never reported as finished
                    return
                finish = (chunk.choices[0].finish_reason if chunk.choices else None) or finish
                delta = chunk.choices[0].text if chunk.choices else ""
                if not delta:
                    continue
                elapsed = time.perf_counter() - start
                if not text:
                    out.ttft_s = elapsed
                text += delta
                out.text, out.seconds = text, elapsed
                out.tokens = self.tokenizer(text, add_special_tokens=False)["input_ids"]
                if end_early(out, gen, self.tokenizer):  # the same stop as in-process; closing ends the request
                    yield out
                    return
                yield out
        except ArenaError:
            raise
        except Exception as exc:  # a stream cut mid-answer: the status line was 200, the body broke
            raise self.server.error(exc, f"streaming an answer from model {model!r}") from exc
        finally:
            stream.close()
        if finish is None:  # e.g. llama-cpp-python with interrupt_requests on cuts a stream for a newer one
            raise ArenaError(f"serving engine at {self.url}: the answer from model {model!r} ended without a finish "
                             "reason (the server interrupted the stream)")
        out.seconds = out.seconds or time.perf_counter() - start
        out.done = True
        yield out

    def _takes_ids(self) -> bool:
        """Whether the server takes token-id prompts: one 1-token probe, once (no retries: llama-cpp-python
        answers 500 to ids, vLLM and llama-server take them). Text is the fallback every server takes."""
        import openai

        with self._lock:
            if self._ids_prompts is None:
                probe = self.chat_ids([{"role": "user", "content": "Hi"}])
                try:
                    self.server.client.with_options(max_retries=0).completions.create(
                        model=self.base_model, prompt=probe, max_tokens=1, temperature=0.0)
                    self._ids_prompts = True
                except openai.RateLimitError:
                    return False  # busy, says nothing about ids: text this time, probe again next time
                except openai.APIStatusError:
                    self._ids_prompts = False
                except openai.OpenAIError as exc:
                    raise self.server.error(exc, "a 1-token probe completion") from exc
            return self._ids_prompts

    def nll(self, prompt_ids: list[int], reference_ids: list[int], adapter: str | None) -> float | None:
        """Mean NLL of the reference from vLLM's `prompt_logprobs`, or None (then `nll_notice` says why).

        Only token-id prompts can be scored (positions must be ours). `echo` + `logprobs` is not used: where
        it is offered without ids (llama-cpp-python) it sorts the vocabulary in Python for every prompt
        token, minutes per RAG prompt on this machine."""
        if self.nll_notice:
            return None
        import openai

        ids = prompt_ids + reference_ids
        scores = None
        if self._takes_ids():
            try:
                out = self.server.client.completions.create(
                    model=adapter or self.base_model, prompt=ids, max_tokens=1, temperature=0.0,
                    extra_body={"prompt_logprobs": 0})
                scores = _reference_logprobs(out, ids, len(reference_ids))
            except openai.OpenAIError as exc:  # a status saying the server cannot score: the notice below
                if not (isinstance(exc, openai.APIStatusError) and exc.status_code in (400, 404, 422, 501)):
                    raise self.server.error(exc, "scoring a reference answer") from exc
        if not scores:
            self.nll_notice = (f"reference NLL (and the forgetting check built on it) skipped: the serving engine "
                               f"at {self.url} does not return prompt log-probabilities for token-id prompts "
                               "(vLLM's prompt_logprobs)")
            return None
        return -sum(scores) / len(scores)


def engine_from_settings(settings) -> OpenAIEngine:
    """The engine `--engine openai --engine-url URL [--engine-key VAR] [--engine-concurrency N]` asks for."""
    if not settings.engine_url:
        raise ArenaError("--engine openai needs --engine-url URL (the OpenAI-compatible server, e.g. "
                         "http://127.0.0.1:8000/v1); nothing is sent anywhere without it")
    from transformers import AutoConfig, AutoTokenizer

    from foundation.models import resolve_model_path  # deferred: pulls torch

    # the tokenizer and config of settings.model (the model the server serves), without its weights
    path = resolve_model_path(settings.model, settings)
    kwargs = {"trust_remote_code": settings.trust_remote_code}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        config = AutoConfig.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise ArenaError(f"the tokenizer of {settings.model!r} (the served model) could not be loaded: "
                         f"{exc}") from exc
    return OpenAIEngine(tokenizer, config,
                        ServerConfig(settings.engine_url, settings.engine_key, settings.engine_concurrency))


def _extra(gen: GenSettings) -> dict:
    """Settings outside the OpenAI schema, understood by vLLM (repetition_penalty) and llama.cpp (repeat_).
    The stop on repetition is ours (end_early), never the server's, so it is the same on every server."""
    if gen.repetition_penalty == 1.0:
        return {}
    return {"repetition_penalty": gen.repetition_penalty, "repeat_penalty": gen.repetition_penalty}


def _reference_logprobs(out, ids: list[int], n_ref: int) -> list[float]:
    """The reference tokens' log-probabilities from vLLM's `prompt_logprobs` (one {token_id: {"logprob"}} per
    prompt position, None first), or [] when the response has none."""
    positions = getattr(out.choices[0], "prompt_logprobs", None) if out.choices else None
    if not positions or len(positions) != len(ids):
        return []
    picked = []
    for token, entry in zip(ids[-n_ref:], positions[-n_ref:], strict=True):
        value = (entry or {}).get(str(token)) or (entry or {}).get(token)
        if value is None:
            return []
        picked.append(float(value["logprob"] if isinstance(value, dict) else value))
    return picked


def _base_model(served: list[dict], url: str) -> str:
    """The first listed model that is not an adapter of another (vLLM marks those with `parent`)."""
    bases = [m["id"] for m in served if not m.get("parent")]
    if not bases:
        raise ArenaError(f"the serving engine at {url} lists no model (GET /models)")
    return bases[0]
