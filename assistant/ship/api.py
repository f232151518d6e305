"""The OpenAI-compatible endpoint: GET /v1/models, POST /v1/chat/completions (streaming and not).

A FastAPI app (pydantic models describe the requests): `arena serve --api` runs it alone or with the Gradio
app mounted beside it on the same server. Extra response fields (documented in docs/shipping.md):
`sources` (the passages a RAG variant's answer was given, with citations) and `notice` (e.g. a trimmed
context). Errors come back in OpenAI's shape, {"error": {"message", "type", "code"}}, with a 4xx status.
"""

from __future__ import annotations

import base64
import hmac
import json
import time
import uuid
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from assistant.inference.base import last
from assistant.ship.service import ChatService, Turn, UnknownModel
from foundation.errors import ArenaError
from foundation.generation import GenSettings, RowOutput, source_json

MAX_BODY_BYTES = 2_000_000  # a request larger than this is refused (413) before it is read
MAX_MESSAGES = 512
MAX_CONTENT_CHARS = 200_000  # per message; the question itself is cut to the model's context with a notice


class Part(BaseModel):
    type: Literal["text"]
    text: str = Field(max_length=MAX_CONTENT_CHARS)


class Message(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[Part] = Field(max_length=MAX_CONTENT_CHARS)

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatRequest(BaseModel):
    model: str = Field(max_length=300)
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    # Greedy by default, as the comparison generated; a client may ask for sampling.
    max_tokens: int | None = Field(default=None, ge=1, le=100_000)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=100_000)
    temperature: float | None = Field(default=None, ge=0, le=5)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None

    def gen(self, default_max: int) -> GenSettings:
        return GenSettings(max_new_tokens=self.max_completion_tokens or self.max_tokens or default_max,
                           temperature=self.temperature or 0.0, top_p=self.top_p or 1.0, seed=self.seed or 0)


def _error(status: int, message: str, code: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": code, "param": None}}, status)


def authorized(header: str, auth: tuple[tuple[str, str], ...]) -> bool:
    """`Authorization: Bearer KEY` where KEY is a --auth password (or user:password), or HTTP Basic."""
    scheme, _, value = header.partition(" ")
    candidates = {value.strip()}
    if scheme.lower() == "basic":
        try:
            candidates = {base64.b64decode(value.strip()).decode()}
        except (ValueError, UnicodeDecodeError):
            return False
    elif scheme.lower() != "bearer":
        return False
    # compare_digest against every accepted form (a list, not any(): no early exit), so the time taken says
    # nothing about which one was near
    return any([hmac.compare_digest(given.encode(), key.encode()) for user, password in auth
                for key in (password, f"{user}:{password}") for given in candidates])


def create_api(service: ChatService, auth: tuple[tuple[str, str], ...] = (), app: FastAPI | None = None) -> FastAPI:
    """The /v1 routes on `app` (a new FastAPI app by default); with `auth`, every /v1 request needs a key."""
    app = app or FastAPI(title="Strategy Arena API", docs_url=None, redoc_url=None)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if not request.url.path.startswith("/v1"):
            return await call_next(request)
        if auth and not authorized(request.headers.get("authorization", ""), auth):
            return _error(401, "missing or wrong API key (Authorization: Bearer PASSWORD of --auth)",
                          "invalid_api_key", "authentication_error")
        size = request.headers.get("content-length", "")
        if size.isdigit() and int(size) > MAX_BODY_BYTES:
            return _error(413, f"request body of {size} bytes exceeds {MAX_BODY_BYTES}", "request_too_large")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error(400, f"{where}: {first.get('msg', 'invalid request')}", "invalid_request")

    @app.get("/v1/models")
    def models():
        now = int(time.time())
        return {"object": "list", "data": [{"id": name, "object": "model", "created": now, "owned_by": "arena"}
                                           for name in service.models()]}

    @app.post("/v1/chat/completions")
    def chat(body: ChatRequest):
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        try:
            default_max = service.strategy(body.model).max_new_tokens
            turn = service.prepare(body.model, messages, body.gen(default_max))
        except UnknownModel as exc:
            return _error(404, str(exc), "model_not_found")
        except ArenaError as exc:
            return _error(400, str(exc), "invalid_request")
        if body.stream:
            return StreamingResponse(_sse(service, turn, body.model), media_type="text/event-stream")
        return _completion(service, turn, body.model)

    return app


def _extras(turn: Turn) -> dict:
    return {"sources": [{**source_json(h), "text": h.text} for h in turn.sources], "notice": turn.notice}


def _finish(turn: Turn, out: RowOutput) -> str:
    return "length" if len(out.tokens) >= turn.gen.max_new_tokens else "stop"


def _completion(service: ChatService, turn: Turn, model: str) -> JSONResponse:
    out = last(service.stream(turn))
    usage = {"prompt_tokens": len(turn.row.input_ids), "completion_tokens": len(out.tokens),
             "total_tokens": len(turn.row.input_ids) + len(out.tokens)}
    return JSONResponse({"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
                         "created": int(time.time()), "model": model,
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": out.text},
                                      "finish_reason": _finish(turn, out)}],
                         "usage": usage, **_extras(turn)})


def _sse(service: ChatService, turn: Turn, model: str):
    """Server-sent events: a role chunk (with the sources), content deltas, a finish chunk, then [DONE]."""
    ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(delta: dict, finish: str | None = None, extra: dict | None = None) -> str:
        body = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **(extra or {})}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""}, extra=_extras(turn))
    sent, out = "", RowOutput()
    try:
        for out in service.stream(turn):
            if out.text.startswith(sent) and len(out.text) > len(sent):
                yield chunk({"content": out.text[len(sent):]})
                sent = out.text
    except ArenaError as exc:  # after the headers went out, an error can only be an event
        yield f"data: {json.dumps({'error': {'message': str(exc), 'type': 'server_error'}})}\n\n"
        return
    yield chunk({}, _finish(turn, out), _extras(turn))
    yield "data: [DONE]\n\n"
