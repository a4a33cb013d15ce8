"""Text generation requests and the events the engine thread streams back.

Everything here is immutable or thread-confined: requests go to the engine thread,
events (plain strings and ints) come back to the HTTP side.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class GenerationRequest:
    """A chat (messages) or a plain-text completion (prompt) request."""

    params: SamplingParams
    messages: tuple[tuple[str, str], ...] = ()  # (role, content)
    prompt: str | tuple[int, ...] | None = None

    @property
    def is_chat(self) -> bool:
        return self.prompt is None


@dataclass(frozen=True)
class GenerationStarted:
    prompt_tokens: int


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class GenerationFinished:
    finish_reason: str  # "stop" (end of sequence or a stop string) or "length"
    prompt_tokens: int
    completion_tokens: int
    seconds: float


@dataclass(frozen=True)
class GenerationFailed:
    message: str
    status: int = 500  # 400 for bad input (a prompt the tokenizer rejects), 503 when stopping


@dataclass(frozen=True)
class GenerationPiece:
    """What a language backend yields per token: new text and, last, why it stopped."""

    text: str
    finish_reason: str | None = None


class StopMatcher:
    """Cuts streamed text at the first stop string, holding back what may start one.

    feed() returns the text that is safe to send and whether a stop string was hit;
    flush() returns what was held back once the stream ends without a stop.
    """

    def __init__(self, stops: tuple[str, ...]):
        self.stops = tuple(s for s in stops if s)
        self._held = ""

    def feed(self, text: str) -> tuple[str, bool]:
        if not self.stops:
            return text, False
        buf = self._held + text
        hits = [i for i in (buf.find(s) for s in self.stops) if i >= 0]
        if hits:
            self._held = ""
            return buf[: min(hits)], True
        keep = 0  # longest tail of buf that is a proper prefix of a stop string
        for s in self.stops:
            for n in range(min(len(s) - 1, len(buf)), keep, -1):
                if buf.endswith(s[:n]):
                    keep = n
                    break
        self._held = buf[len(buf) - keep :] if keep else ""
        return buf[: len(buf) - keep], False

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held
