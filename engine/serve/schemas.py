"""Request and response models of the HTTP API (pydantic); they define the OpenAPI document.

The language-model models follow OpenAI's chat/completions and completions shapes, the
subset mlx_lm.server implements; unknown request fields are ignored like OpenAI does.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ErrorDetail(BaseModel):
    message: str = Field(description="one line naming the problem")
    type: str = Field(description="invalid_request_error, request_too_large, service_unavailable, server_error ...")
    code: int = Field(description="the HTTP status code")


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer has this JSON body (OpenAI's error shape)."""

    error: ErrorDetail


# -- service -----------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    model: str
    kind: Literal["image-classifier", "language-model"]
    queued: int = Field(description="requests waiting for the engine thread")
    busy: bool = Field(description="the engine thread is running a request now")
    served: int = Field(description="requests served since start")
    batches: int = Field(description="classifier forward passes run (one per micro-batch)")
    largest_batch: int
    generations: int = Field(description="completions finished")
    cancelled: int = Field(description="completions stopped because the client went away")
    failed: int
    uptime_s: float


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "mlx-quant-studio"
    kind: Literal["image-classifier", "language-model"]
    recipe: str = Field(description="fp32, fp16, int8, int4, mxfp4 ... for bundles; float or intN for language models")
    labels: list[str] | None = Field(default=None, description="class labels (image classifiers)")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# -- image classification --------------------------------------------------------------------


class ClassifyJSONRequest(BaseModel):
    """An image sent as base64 in JSON (the multipart form sends the file itself)."""

    image: str = Field(description="the encoded image file (PNG, JPEG ...) as base64, or a data: URL")
    top_k: int = Field(default=5, ge=1, le=1000, description="how many labels to return")
    filename: str | None = Field(default=None, description="a name for the image in error messages")


class ClassifyUpload(BaseModel):
    """The multipart/form-data body of /v1/classify."""

    file: bytes = Field(json_schema_extra={"format": "binary"}, description="the image file")
    top_k: int = Field(default=5, ge=1, le=1000)


class LabelScore(BaseModel):
    label: str
    index: int = Field(description="class index in the model's output")
    probability: float


class ClassifyResponse(BaseModel):
    model: str
    predictions: list[LabelScore] = Field(description="top-k labels, most probable first")
    latency_ms: float = Field(description="time in the service: decode, queue and inference")
    inference_ms: float = Field(description="the forward pass of the batch this image ran in")
    queue_ms: float = Field(description="time waiting for the engine thread")
    batch_size: int = Field(description="how many requests shared the forward pass")


# -- language models ---------------------------------------------------------------------------


class StreamOptions(BaseModel):
    include_usage: bool = False


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(default=None, description="ignored: the service serves one model")
    max_tokens: int | None = Field(default=None, ge=1, description="default: the service's default_max_tokens")
    temperature: float = Field(default=0.0, ge=0.0, le=10.0, description="0 is greedy (as mlx_lm.server)")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=0)
    min_p: float = Field(default=0.0, ge=0.0, le=1.0)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1, description="0 .. 2^63-1")
    stop: str | list[str] | None = Field(default=None, description="stop strings; not included in the output")
    stream: bool = False
    stream_options: StreamOptions | None = None


class TextPart(BaseModel):
    type: Literal["text"] = "text"
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[TextPart] = ""


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)


class CompletionRequest(_Sampling):
    prompt: str | list[int] = Field(description="text, or token ids")


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(BaseModel):
    index: int = 0
    delta: ChatDelta
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionChunk(BaseModel):
    """One `data:` event of a streamed chat completion; the stream ends with `data: [DONE]`."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class Completion(BaseModel):
    """A text completion, or (with stream) one `data:` event of it; the stream ends with `data: [DONE]`."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
