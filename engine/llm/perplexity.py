"""Perplexity of a language model on a text file.

Definition (the same in the CLI, the GUI and the README): the text is tokenized
once, without special tokens, and cut into consecutive non-overlapping windows of
N tokens (N = 512 by default; the last window may be shorter). Each window is
run on its own from an empty cache and predicts its tokens 1 … n−1 from the ones
before them in that window. When the model's tokenizer adds a BOS token (Gemma,
Llama 2/3), each window is run as [BOS] + window instead and all n of its tokens
are predicted, token 0 from BOS alone: such models are trained never to see text
without BOS, and without it Gemma 3 scores several times worse than it is.
Perplexity is exp of the mean negative log-likelihood over every predicted token
of every window.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import numpy as np

from engine.core.errors import Cancelled, UserError
from engine.llm.loader import LanguageModel

DEFAULT_CONTEXT = 512
DEFINITION = (
    "Perplexity = exp(mean negative log-likelihood per predicted token). The text is tokenized once without "
    "special tokens and cut into non-overlapping windows of N tokens (default 512); each window predicts its "
    "tokens 1…n−1 from the tokens before them in the same window. If the tokenizer adds a BOS token "
    "(Gemma, Llama 2/3), each window is run as [BOS] + window and all its n tokens are predicted."
)


@dataclass(frozen=True)
class PerplexityResult:
    model_name: str
    recipe: str
    text: str
    context: int
    tokens: int
    predicted: int
    windows: int
    nll: float  # mean negative log-likelihood per predicted token (nats)
    perplexity: float
    seconds: float
    bos: bool = False  # windows were run as [BOS] + window

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def metrics(self) -> dict[str, float]:
        return {
            "perplexity": self.perplexity,
            "nll": self.nll,
            "tokens": float(self.tokens),
            "predicted_tokens": float(self.predicted),
            "windows": float(self.windows),
            "context": float(self.context),
            "tokens_per_s": self.tokens_per_s,
            "bos": float(self.bos),
        }


def read_text(path: str | Path) -> str:
    """A UTF-8 text file (WikiText-2 raw works as is); UserError when missing, binary or empty."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError("text file not found", p)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"not a UTF-8 text file ({exc.reason} at byte {exc.start})", p) from None
    if not text.strip():
        raise UserError("the text file is empty", p)
    return text


def windows(ids: np.ndarray, context: int, bos: int | None = None) -> list[np.ndarray]:
    """Consecutive non-overlapping windows, each led by ``bos`` when given.

    Without BOS a last window shorter than 2 tokens predicts nothing and is dropped.
    """
    out = [ids[i : i + context] for i in range(0, len(ids), context)]
    if bos is not None:
        return [np.concatenate([np.array([bos], dtype=ids.dtype), w]) for w in out if len(w)]
    return [w for w in out if len(w) >= 2]


def tokenizer_bos(tokenizer) -> int | None:
    """The BOS id the tokenizer puts before a text, or None when it adds none."""
    bos = getattr(tokenizer, "bos_token_id", None)  # an mlx-lm TokenizerWrapper forwards to its HF tokenizer
    if bos is None:
        return None
    try:
        with_special = list(tokenizer.encode("a", add_special_tokens=True))
        plain = list(tokenizer.encode("a", add_special_tokens=False))
    except Exception:  # a tokenizer that cannot say: keep the definition without BOS
        return None
    return int(bos) if len(with_special) > len(plain) and with_special[0] == bos else None


def window_nll(model, batch: np.ndarray) -> np.ndarray:
    """Summed NLL of tokens 1…n−1 of each row of ``batch`` (B, n), computed in float32."""
    x = mx.array(batch)
    logits = model(x[:, :-1]).astype(mx.float32)
    targets = x[:, 1:]
    picked = mx.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    nll = (mx.logsumexp(logits, axis=-1) - picked).sum(axis=-1)
    mx.eval(nll)
    return np.array(nll, dtype=np.float64)


def perplexity(
    lm: LanguageModel,
    ids: np.ndarray,
    context: int = DEFAULT_CONTEXT,
    text_name: str = "",
    batch_size: int = 4,
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    bos: int | None | bool = True,
) -> PerplexityResult:
    """Perplexity of ``lm`` on token ids by the module's definition.

    Args:
        bos: True (default): lead each window with the BOS token when ``lm``'s tokenizer adds one;
            False: never; an int: lead with that token id.

    Raises:
        UserError: fewer than 2 tokens, or a context below 2.
        Cancelled: when should_stop() turns true between batches.
    """
    if context < 2:
        raise UserError(f"context must be at least 2 tokens, not {context}")
    ids = np.asarray(ids, dtype=np.int32)
    if bos is True:
        bos = tokenizer_bos(lm.tokenizer)
    elif bos is False:
        bos = None
    wins = windows(ids, context, bos)
    if not wins:
        raise UserError(f"the text has {len(ids)} token(s); perplexity needs at least {1 if bos is not None else 2}")
    t0 = time.perf_counter()
    total, count = 0.0, 0
    n_full = context + (bos is not None)
    full = [w for w in wins if len(w) == n_full]
    rest = [w for w in wins if len(w) != n_full]
    groups = [np.stack(full[i : i + batch_size]) for i in range(0, len(full), batch_size)]
    groups += [w[None] for w in rest]
    done = 0
    for g in groups:
        if should_stop and should_stop():
            raise Cancelled()
        total += float(window_nll(lm.model, g).sum())
        count += g.shape[0] * (g.shape[1] - 1)
        done += g.shape[0]
        if progress:
            progress(done / len(wins), f"{done}/{len(wins)} windows, perplexity so far {math.exp(total / count):.3f}")
    nll = total / count
    return PerplexityResult(
        model_name=lm.name,
        recipe=lm.recipe_name,
        text=text_name,
        context=context,
        tokens=int(len(ids)),
        predicted=count,
        windows=len(wins),
        nll=nll,
        perplexity=math.exp(nll),
        seconds=time.perf_counter() - t0,
        bos=bos is not None,
    )


@dataclass(frozen=True)
class PerplexityComparison:
    """Perplexity of several variants on the same text; deltas are against the first."""

    results: tuple[PerplexityResult, ...]

    def rows(self) -> list[dict]:
        base = self.results[0].perplexity
        return [
            {
                "model": r.model_name,
                "recipe": r.recipe,
                "perplexity": r.perplexity,
                "delta": r.perplexity - base,
                "delta_pct": 100.0 * (r.perplexity - base) / base,
                "nll": r.nll,
                "tokens": r.tokens,
            }
            for r in self.results
        ]
