"""Language models for the service, through mlx-lm.

Models load through ``engine.llm.loader`` like everywhere else; this file turns chat
messages or a prompt into tokens and generates token by token with mlx-lm.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

from engine.core.errors import Cancelled, UserError
from engine.serve.generation import GenerationPiece, GenerationRequest, SamplingParams
from engine.serve.info import LANGUAGE_MODEL, ModelInfo

# Prompts are prefilled this many tokens at a time, checking for cancellation between chunks.
PREFILL_CHUNK = 256
# The most prompt tokens one request may send, whatever the model's context.
MAX_PROMPT_TOKENS = 32_768


class LanguageBackend:
    def __init__(self, spec: str):
        # The same loader as every other front end: memory guard, GGUF, Hugging Face ids, float widening.
        from engine.llm.loader import load_language_model

        lm = load_language_model(spec)
        self.model, self.tokenizer = lm.model, lm.tokenizer
        path = Path(lm.path)
        self.context_length = context_length(lm.config)
        local = path.exists()
        created = int((path / "config.json" if path.is_dir() else path).stat().st_mtime) if local else int(time.time())
        self.info = ModelInfo(
            id=lm.name,
            kind=LANGUAGE_MODEL,
            path=str(path.resolve()) if local else lm.path,
            recipe=lm.recipe_name,
            created=created,
        )

    # -- prompts -----------------------------------------------------------------------
    def prompt_tokens(self, request: GenerationRequest) -> list[int]:
        """The request as token ids, within the model's context and the service's prompt limit.

        Raises:
            UserError: token ids outside the vocabulary, a template that rejects the messages, or a
                prompt that (with max_tokens) does not fit.
        """
        tokens = self._tokens(request)
        check_prompt_length(len(tokens), request.params.max_tokens, self.context_length)
        return tokens

    def _tokens(self, request: GenerationRequest) -> list[int]:
        """The request as token ids: the chat template for messages, plain encoding for a prompt."""
        tok = self.tokenizer
        if not request.is_chat:
            if isinstance(request.prompt, tuple):
                bad = [t for t in request.prompt if not (0 <= t < tok.vocab_size)]
                if bad:
                    raise UserError(f"prompt token ids outside the vocabulary (0..{tok.vocab_size - 1}): {bad[:5]}")
                return list(request.prompt)
            return tok.encode(request.prompt)
        messages = [{"role": role, "content": content} for role, content in request.messages]
        if tok.has_chat_template:
            try:
                return list(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))
            except Exception as exc:  # jinja templates raise their own errors for unsupported roles
                raise UserError(f"the model's chat template rejects these messages ({exc})") from None
        return tok.encode(plain_chat_prompt(request.messages))

    # -- generation --------------------------------------------------------------------
    def generate(
        self, tokens: list[int], params: SamplingParams, should_stop: Callable[[], bool]
    ) -> Iterator[GenerationPiece]:
        """Yield text piece by piece; the last piece carries the finish reason ("stop" or "length").

        Raises:
            Cancelled: should_stop() turned true between tokens.
        """
        import mlx.core as mx
        from mlx_lm.generate import stream_generate
        from mlx_lm.sample_utils import make_sampler

        if params.seed is not None:
            mx.random.seed(params.seed)
        sampler = make_sampler(params.temperature, top_p=params.top_p, min_p=params.min_p, top_k=params.top_k)

        def prefill_progress(done: int, total: int) -> None:  # between prefill chunks
            if should_stop():
                raise Cancelled()

        for response in stream_generate(
            self.model,
            self.tokenizer,
            mx.array(tokens),
            max_tokens=params.max_tokens,
            sampler=sampler,
            prefill_step_size=PREFILL_CHUNK,
            prompt_progress_callback=prefill_progress,
        ):
            if should_stop():
                raise Cancelled()
            yield GenerationPiece(response.text, response.finish_reason)

    def close(self) -> None:
        self.model = None
        self.tokenizer = None


def context_length(config: dict) -> int | None:
    """The longest sequence the model was built for, from its config; None when it states none."""
    for key in ("max_position_embeddings", "max_sequence_length", "n_positions", "seq_length", "context_length"):
        value = config.get(key) if isinstance(config, dict) else None
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_prompt_length(prompt_tokens: int, max_tokens: int, context: int | None) -> None:
    """Raise UserError (HTTP 400) for a prompt over the service's limit or beyond the model's context."""
    if prompt_tokens > MAX_PROMPT_TOKENS:
        raise UserError(f"the prompt has {prompt_tokens:,} tokens; this service accepts at most {MAX_PROMPT_TOKENS:,}")
    if context is not None and prompt_tokens + max_tokens > context:
        raise UserError(
            f"the prompt has {prompt_tokens:,} tokens and max_tokens is {max_tokens:,}, but the model's context "
            f"holds {context:,}; shorten the prompt or lower max_tokens"
        )


def plain_chat_prompt(messages: tuple[tuple[str, str], ...]) -> str:
    """A role-prefixed transcript for tokenizers without a chat template (as mlx_lm.server does)."""
    lines = [f"{role.upper()}: {content}" for role, content in messages]
    return "\n".join(lines) + "\nASSISTANT:"
