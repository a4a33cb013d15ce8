"""The FastAPI application: routes, validation, errors and the bridge to the engine thread.

The event loop never touches MLX: images are decoded on Starlette's thread pool (PIL and
numpy), inference runs on the InferenceWorker's thread, and results come back as frozen
dataclasses through futures (classify) or an asyncio queue fed with
``loop.call_soon_threadsafe`` (token streaming).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
import uuid
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

import engine
from engine.core.errors import UserError
from engine.serve import schemas as s
from engine.serve.backends import CLASSIFIER, preprocess_upload
from engine.serve.config import ServeSettings
from engine.serve.generation import (
    GenerationFailed,
    GenerationFinished,
    GenerationRequest,
    GenerationStarted,
    SamplingParams,
    TextDelta,
)
from engine.serve.guard import ERROR_TYPES, RequestGuard, error_response
from engine.serve.worker import InferenceWorker, ServiceBusy, ServiceStopped

_ERR = {"model": s.ErrorResponse}
CLASSIFY_ERRORS = {400: _ERR, 413: _ERR, 415: _ERR, 422: _ERR, 503: _ERR}
GENERATE_ERRORS = {400: _ERR, 413: _ERR, 422: _ERR, 503: _ERR, 500: _ERR}
LM_PATHS = ("/v1/chat/completions", "/v1/completions")


class ServiceError(HTTPException):
    """An HTTP error with a one-line message; rendered as ErrorResponse."""


class BodyLimitMiddleware:
    """Answer 413 (JSON) to request bodies over ``max_bytes``: by Content-Length before reading,
    or while reading a chunked body."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> str:
        return f"request body is over the {self.max_bytes:,}-byte limit"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                response = error_response(413, self._too_large(), headers={"Connection": "close"})
                return await response(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise ServiceError(413, self._too_large())
            return message

        await self.app(scope, limited_receive, send)


def create_app(worker: InferenceWorker, settings: ServeSettings) -> FastAPI:
    """The service's app for a worker whose model has loaded (``worker.start().result()``)."""
    info = worker.info
    started = time.time()
    app = FastAPI(
        title="MLX Quant Studio inference service",
        version=engine.__version__,
        description=(
            f"Serves {info.id} ({info.kind}). Image classifiers: POST /v1/classify. Language models: "
            "OpenAI-compatible POST /v1/chat/completions and /v1/completions (stream with SSE). "
            "Errors are JSON: {error: {message, type, code}}."
        ),
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    # Added last, so it runs first: Host, Origin and API key before anything reads the body.
    app.add_middleware(
        RequestGuard, bound_host=settings.host, allowed_origins=settings.allowed_origins, api_key=settings.api_key
    )
    _install_error_handlers(app, info)

    @app.get("/health", response_model=s.Health, responses={503: {"model": s.Health}}, tags=["service"])
    async def health() -> JSONResponse:
        st = worker.stats()
        body = s.Health(
            status="ok" if st.alive else "unavailable",
            model=info.id,
            kind=info.kind,
            queued=st.queued,
            busy=st.busy,
            served=st.served,
            batches=st.batches,
            largest_batch=st.largest_batch,
            generations=st.generations,
            cancelled=st.cancelled,
            failed=st.failed,
            uptime_s=round(time.time() - started, 3),
        )
        return JSONResponse(body.model_dump(), status_code=200 if st.alive else 503)

    @app.get("/v1/models", response_model=s.ModelList, tags=["service"])
    async def models() -> s.ModelList:
        card = s.ModelCard(
            id=info.id,
            created=info.created,
            kind=info.kind,
            recipe=info.recipe,
            labels=list(info.labels) if info.kind == CLASSIFIER else None,
        )
        return s.ModelList(data=[card])

    if info.kind == CLASSIFIER:
        _add_classify_route(app, worker, settings)
    else:
        _add_generation_routes(app, worker, settings)
    _install_openapi(app, [s.ClassifyJSONRequest, s.ClassifyUpload, s.ChatCompletionChunk, s.ErrorResponse])
    return app


# -- classification ----------------------------------------------------------------------------


def _add_classify_route(app: FastAPI, worker: InferenceWorker, settings: ServeSettings) -> None:
    info = worker.info
    decodes = asyncio.Semaphore(settings.max_concurrent_decodes)  # decoded pixels held at once stay bounded
    body_doc = {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": {"$ref": "#/components/schemas/ClassifyUpload"}},
                "application/json": {"schema": {"$ref": "#/components/schemas/ClassifyJSONRequest"}},
            },
        }
    }

    @app.post(
        "/v1/classify",
        response_model=s.ClassifyResponse,
        responses=CLASSIFY_ERRORS,
        openapi_extra=body_doc,
        tags=["image classification"],
        summary="Classify one image (multipart upload or base64 JSON)",
    )
    async def classify(request: Request) -> s.ClassifyResponse:
        t0 = time.perf_counter()
        data, name, top_k = await _read_image_request(request)
        async with decodes:
            image = await run_in_threadpool(
                preprocess_upload, data, name, info.preprocessing, settings.max_image_pixels
            )
        result = await asyncio.wrap_future(worker.classify(image, top_k))
        return s.ClassifyResponse(
            model=info.id,
            predictions=[
                s.LabelScore(label=p.label, index=p.index, probability=p.probability) for p in result.predictions
            ],
            latency_ms=(time.perf_counter() - t0) * 1000.0,
            inference_ms=result.inference_ms,
            queue_ms=result.queue_ms,
            batch_size=result.batch_size,
        )


async def _read_image_request(request: Request) -> tuple[bytes, str, int]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        async with request.form(max_files=1, max_fields=8) as form:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise ServiceError(400, "send the image as a file in the multipart field 'file'")
            data = await upload.read()
            fields = _validate(s.ClassifyUpload, {"file": b"", "top_k": form.get("top_k", 5)})
            return data, upload.filename or "upload", fields.top_k
    if ctype == "application/json":
        body = _validate(s.ClassifyJSONRequest, await request.body(), from_json=True)
        text = body.image
        if text.startswith("data:"):
            text = text.partition(",")[2]
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ServiceError(400, "'image' is not valid base64") from None
        return data, body.filename or "image", body.top_k
    raise ServiceError(415, f"send multipart/form-data or application/json, not '{ctype or 'no content type'}'")


def _validate(model: type[BaseModel], data, from_json: bool = False):
    try:
        return model.model_validate_json(data) if from_json else model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


# -- language models -----------------------------------------------------------------------------


def _add_generation_routes(app: FastAPI, worker: InferenceWorker, settings: ServeSettings) -> None:
    info = worker.info
    chunk_doc = {"text/event-stream": {"schema": {"$ref": "#/components/schemas/ChatCompletionChunk"}}}
    text_doc = {"text/event-stream": {"schema": {"$ref": "#/components/schemas/Completion"}}}

    @app.post(
        "/v1/chat/completions",
        response_model=s.ChatCompletion,
        responses={**GENERATE_ERRORS, 200: {"content": chunk_doc, "description": "JSON, or SSE when stream"}},
        tags=["language model"],
        summary="Chat completion (OpenAI-compatible; stream: true sends server-sent events)",
    )
    async def chat_completions(body: s.ChatCompletionRequest, http: Request):
        messages = tuple((m.role, _content_text(m.content)) for m in body.messages)
        request = GenerationRequest(_sampling(body, settings), messages=messages)
        return await _generate(worker, info.id, request, body, chat=True, http=http)

    @app.post(
        "/v1/completions",
        response_model=s.Completion,
        responses={**GENERATE_ERRORS, 200: {"content": text_doc, "description": "JSON, or SSE when stream"}},
        tags=["language model"],
        summary="Text completion (OpenAI-compatible; stream: true sends server-sent events)",
    )
    async def completions(body: s.CompletionRequest, http: Request):
        prompt = body.prompt if isinstance(body.prompt, str) else tuple(body.prompt)
        request = GenerationRequest(_sampling(body, settings), prompt=prompt)
        return await _generate(worker, info.id, request, body, chat=False, http=http)


def _content_text(content: str | list[s.TextPart]) -> str:
    return content if isinstance(content, str) else "".join(part.text for part in content)


def _sampling(body: s.ChatCompletionRequest | s.CompletionRequest, settings: ServeSettings) -> SamplingParams:
    max_tokens = body.max_tokens or min(settings.default_max_tokens, settings.max_tokens_limit)
    if max_tokens > settings.max_tokens_limit:
        raise ServiceError(400, f"max_tokens is {max_tokens}; this service allows at most {settings.max_tokens_limit}")
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    return SamplingParams(max_tokens, body.temperature, body.top_p, body.top_k, body.min_p, body.seed, stop)


async def _generate(
    worker: InferenceWorker, model_id: str, request: GenerationRequest, body, chat: bool, http: Request | None = None
):
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()

    def sink(event: object) -> None:  # called on the engine thread
        loop.call_soon_threadsafe(events.put_nowait, event)

    cancel = worker.generate(request, sink)
    watched = DisconnectWatch(events, http, cancel)
    try:
        first = await watched.next()
    except BaseException:
        cancel.set()
        raise
    if isinstance(first, GenerationFailed):
        raise ServiceError(first.status, first.message)
    assert isinstance(first, GenerationStarted)
    ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
    created = int(time.time())
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        stream = _sse(events, cancel, ident, created, model_id, chat, include_usage)
        # The background task also runs when the client leaves before the stream starts.
        return StreamingResponse(
            stream,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
            background=BackgroundTask(cancel.set),
        )
    parts: list[str] = []
    try:
        while True:
            event = await watched.next()  # a client that leaves cancels the generation (prefill too)
            if isinstance(event, TextDelta):
                parts.append(event.text)
            elif isinstance(event, GenerationFailed):
                raise ServiceError(event.status, event.message)
            elif isinstance(event, GenerationFinished):
                break
    finally:
        cancel.set()  # harmless when finished; stops the engine thread when the client went away
    usage = s.Usage(
        prompt_tokens=event.prompt_tokens,
        completion_tokens=event.completion_tokens,
        total_tokens=event.prompt_tokens + event.completion_tokens,
    )
    text = "".join(parts)
    if chat:
        choice = s.ChatChoice(message=s.AssistantMessage(content=text), finish_reason=event.finish_reason)
        return s.ChatCompletion(id=ident, created=created, model=model_id, choices=[choice], usage=usage)
    choice = s.CompletionChoice(text=text, finish_reason=event.finish_reason)
    return s.Completion(id=ident, created=created, model=model_id, choices=[choice], usage=usage)


class DisconnectWatch:
    """Read engine events while polling for a client that went away; then cancel and raise ServiceError.

    One pending ``events.get()`` is kept across polls, so no event is lost to a timeout.
    """

    POLL_S = 0.1

    def __init__(self, events: asyncio.Queue, http: Request | None, cancel):
        self.events, self.http, self.cancel = events, http, cancel
        self._pending: asyncio.Future | None = None

    async def next(self) -> object:
        if self.http is None:
            return await self.events.get()
        if self._pending is None:
            self._pending = asyncio.ensure_future(self.events.get())
        try:
            while True:
                done, _ = await asyncio.wait({self._pending}, timeout=self.POLL_S)
                if done:
                    event, self._pending = self._pending.result(), None
                    return event
                if await self.http.is_disconnected():
                    self.cancel.set()
                    raise ServiceError(499, "the client closed the connection")
        except BaseException:
            if self._pending is not None:
                self._pending.cancel()
                self._pending = None
            raise


async def _sse(
    events: asyncio.Queue, cancel, ident: str, created: int, model_id: str, chat: bool, include_usage: bool
) -> AsyncIterator[str]:
    """Server-sent events: one `data: {json}` per text piece, a final chunk with finish_reason, `data: [DONE]`."""

    def chunk(text: str | None, finish: str | None = None, role: bool = False, usage: s.Usage | None = None) -> str:
        if chat:
            choices = (
                []
                if usage
                else [
                    s.ChatChunkChoice(
                        delta=s.ChatDelta(role="assistant" if role else None, content=text), finish_reason=finish
                    )
                ]
            )
            obj = s.ChatCompletionChunk(id=ident, created=created, model=model_id, choices=choices, usage=usage)
        else:
            choices = [] if usage else [s.CompletionChoice(text=text or "", finish_reason=finish)]
            obj = s.Completion(id=ident, created=created, model=model_id, choices=choices, usage=usage)
        return f"data: {obj.model_dump_json(exclude_none=True)}\n\n"

    try:
        if chat:
            yield chunk("", role=True)
        while True:
            event = await events.get()
            if isinstance(event, TextDelta):
                yield chunk(event.text)
            elif isinstance(event, GenerationFailed):
                err = {
                    "error": {
                        "message": event.message,
                        "type": ERROR_TYPES.get(event.status, "server_error"),
                        "code": event.status,
                    }
                }
                yield f"data: {json.dumps(err)}\n\n"
                break
            elif isinstance(event, GenerationFinished):
                yield chunk(None, finish=event.finish_reason)
                if include_usage:
                    total = event.prompt_tokens + event.completion_tokens
                    yield chunk(
                        None,
                        usage=s.Usage(
                            prompt_tokens=event.prompt_tokens,
                            completion_tokens=event.completion_tokens,
                            total_tokens=total,
                        ),
                    )
                break
        yield "data: [DONE]\n\n"
    finally:
        cancel.set()  # the client went away (the task was cancelled) or the stream ended


# -- errors and the OpenAPI document -----------------------------------------------------------


def _install_error_handlers(app: FastAPI, info) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}"
            if request.url.path in LM_PATHS and info.kind == CLASSIFIER:
                message += f"; this service serves the image classifier '{info.id}' (use POST /v1/classify)"
            elif request.url.path == "/v1/classify" and info.kind != CLASSIFIER:
                message += f"; this service serves the language model '{info.id}' (use POST /v1/chat/completions)"
        return error_response(exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, _describe_validation(exc.errors()))

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> JSONResponse:
        return error_response(400, str(exc))

    @app.exception_handler(ServiceBusy)
    async def busy(request: Request, exc: ServiceBusy) -> JSONResponse:
        return error_response(503, str(exc), headers={"Retry-After": "1"})

    @app.exception_handler(ServiceStopped)
    async def stopped(request: Request, exc: ServiceStopped) -> JSONResponse:
        return error_response(503, str(exc))

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return error_response(500, f"{type(exc).__name__}: {first}")


def _describe_validation(errors) -> str:
    """'body.top_k: Input should be greater than or equal to 1' (and how many more problems)."""
    if not errors:
        return "invalid request"
    if errors[0].get("type") == "json_invalid":
        why = (errors[0].get("ctx") or {}).get("error") or errors[0].get("msg", "")
        return f"the request body is not valid JSON ({why})"
    parts = []
    for e in errors[:3]:
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "__root__")
        parts.append(f"{where}: {e.get('msg', 'invalid')}" if where else str(e.get("msg", "invalid")))
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more


def _install_openapi(app: FastAPI, extra: list[type[BaseModel]]) -> None:
    """FastAPI's document plus the schemas that routes reference by hand (multipart/JSON, SSE chunks)."""

    def openapi() -> dict:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            for model in extra:
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                for name, sub in schema.pop("$defs", {}).items():
                    schemas.setdefault(name, sub)
                schemas.setdefault(model.__name__, schema)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi
