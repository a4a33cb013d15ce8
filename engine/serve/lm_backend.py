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


class LanguageBackend:
    def __init__(self, spec: str):
        # The same loader as every other front end: memory guard, GGUF, Hugging Face ids, float widening.
        from engine.llm.loader import load_language_model

        lm = load_language_model(spec)
        self.model, self.tokenizer = lm.model, lm.tokenizer
        path = Path(lm.path)
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
        for response in stream_generate(
            self.model, self.tokenizer, mx.array(tokens), max_tokens=params.max_tokens, sampler=sampler
        ):
            if should_stop():
                raise Cancelled()
            yield GenerationPiece(response.text, response.finish_reason)

    def close(self) -> None:
        self.model = None
        self.tokenizer = None


def plain_chat_prompt(messages: tuple[tuple[str, str], ...]) -> str:
    """A role-prefixed transcript for tokenizers without a chat template (as mlx_lm.server does)."""
    lines = [f"{role.upper()}: {content}" for role, content in messages]
    return "\n".join(lines) + "\nASSISTANT:"
