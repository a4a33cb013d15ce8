"""`generate`: stream text from a language model (and variants, same prompt and seed)."""

from __future__ import annotations

import argparse
import json
import sys

from engine.core.argtypes import (
    positive_int,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="default-lm, an mlx-lm folder, a .gguf file or a Hugging Face id")
    p.add_argument("--prompt", required=True)
    p.add_argument("--max-tokens", type=positive_int, default=100)
    p.add_argument("--temp", type=float, default=0.0, help="temperature (0 = greedy)")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compare", action="append", default=[], metavar="M", help="another variant, same prompt and seed")
    p.add_argument("--json", action="store_true")


def run(args) -> int:
    from engine.jobs.language import GenerateJob
    from engine.llm.generate import GenerationSettings

    settings = GenerationSettings(args.max_tokens, args.temp, args.top_p, args.seed)
    models = (args.model, *args.compare)
    stream = not args.json and len(models) == 1

    def on_partial(chunk) -> None:
        sys.stdout.write(chunk.text)
        sys.stdout.flush()

    from engine.cli import _context
    from engine.runtime import JobContext, Workspace

    ctx = _context(args)
    if stream:  # print text as it streams (progress lines would interleave with it)
        ctx = JobContext(partial=on_partial)
    o = GenerateJob(models, args.prompt, settings).run(ctx, Workspace())
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "model": r.model_name,
                        "recipe": r.recipe,
                        "text": r.text,
                        "prompt_tokens": r.prompt_tokens,
                        "generated_tokens": r.generated_tokens,
                        "prompt_tps": r.prompt_tps,
                        "generation_tps": r.generation_tps,
                        "ttft_s": r.ttft_s,
                        "peak_memory_bytes": r.peak_memory_bytes,
                        "finish_reason": r.finish_reason,
                    }
                    for r in o.results
                ],
                indent=2,
            )
        )
        return 0
    for r in o.results:
        if not stream:
            print(f"== {r.model_name} [{r.recipe}]")
            print(r.prompt + r.text)
        else:
            print()
        print(
            f"-- {r.generated_tokens} tokens, {r.generation_tps:.1f} tokens/s, prompt {r.prompt_tps:.1f} tokens/s, "
            f"first token {1000 * r.ttft_s:.1f} ms",
            file=sys.stderr,
        )
    return 0
