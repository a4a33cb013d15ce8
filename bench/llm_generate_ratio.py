"""Our streaming generation vs mlx_lm.generate on the same model, side by side in one run.

Runs alternate (ours, theirs, ours, theirs, …) with the same prompt, greedy
decoding and the same token budget, so both see the same machine state; the
generated texts must be identical. Prints each side's median end-to-end tokens/s
and the ratio ours / mlx_lm (target: at least 0.98); on a busy machine the ratio of
the best runs is the steadier figure.

    python bench/llm_generate_ratio.py [--model default-lm] [--tokens 200] [--rounds 11]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default-lm")
    ap.add_argument("--prompt", default="Call me Ishmael. Some years ago")
    ap.add_argument("--tokens", type=int, default=200)
    # 11 rounds put the ratio anywhere in 0.975-1.033 on two shared cores; 31 narrow it, and the spread is printed
    ap.add_argument("--rounds", type=int, default=31)
    args = ap.parse_args()

    from mlx_lm import generate

    from engine.llm.generate import GenerationSettings, generate_text
    from engine.llm.loader import load_language_model

    lm = load_language_model(args.model)
    settings = GenerationSettings(max_tokens=args.tokens)

    def ours() -> tuple[float, str, int]:
        t0 = time.perf_counter()
        r = generate_text(lm, args.prompt, settings, on_chunk=lambda c: None, should_stop=lambda: False)
        return time.perf_counter() - t0, r.text, r.generated_tokens

    def theirs() -> tuple[float, str]:
        t0 = time.perf_counter()
        text = generate(lm.model, lm.tokenizer, args.prompt, max_tokens=args.tokens)
        return time.perf_counter() - t0, text

    ours()
    theirs()  # warm-up: compile, caches
    t_ours, t_theirs = [], []
    n_tokens = 0
    for i in range(args.rounds):
        first_ours = i % 2 == 0
        if first_ours:
            a, text_a, n_tokens = ours()
            b, text_b = theirs()
        else:
            b, text_b = theirs()
            a, text_a, n_tokens = ours()
        if text_a != text_b:
            print("the two generations differ; the comparison is void", file=sys.stderr)
            return 1
        t_ours.append(a)
        t_theirs.append(b)
    ours_tps = n_tokens / statistics.median(t_ours)
    theirs_tps = n_tokens / statistics.median(t_theirs)
    best_ratio = min(t_theirs) / min(t_ours)
    print(f"model {lm.name} [{lm.recipe_name}], {n_tokens} tokens, {args.rounds} alternating rounds")
    print(f"  ours      {ours_tps:8.1f} tokens/s median, {n_tokens / min(t_ours):8.1f} best")
    print(f"  mlx_lm    {theirs_tps:8.1f} tokens/s median, {n_tokens / min(t_theirs):8.1f} best")
    print(f"ratio ours/mlx_lm.generate: {ours_tps / theirs_tps:.3f} (medians), {best_ratio:.3f} (best runs)")
    per_round = sorted(b / a for a, b in zip(t_ours, t_theirs, strict=True))
    q = statistics.quantiles(per_round, n=4) if len(per_round) > 1 else [per_round[0]] * 3
    print(
        f"per-round ratio spread: quartiles {q[0]:.3f} / {q[1]:.3f} / {q[2]:.3f}, "
        f"range {per_round[0]:.3f}-{per_round[-1]:.3f} over {len(per_round)} rounds"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
