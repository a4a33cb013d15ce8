"""Command line for language models.

``evaluate``, ``benchmark``, ``quantize`` and ``info`` run these handlers when
``--model`` names a language model (``default-lm``, an mlx-lm folder, a .gguf
file or a Hugging Face id); so does ``sensitivity``, whose language-model options are added
here; ``generate`` is a new command.
"""

from __future__ import annotations

import argparse
import json
import sys

from engine.argtypes import OVERWRITE_HELP, positive_int
from engine.errors import UserError
from engine.llm.perplexity import DEFINITION
from engine.model_card import human_bytes


def register(sub) -> dict:
    """Add language-model options to the shared commands and the new commands; returns handlers."""
    from engine.cli import add_shared_option

    ev = sub.choices["evaluate"]
    add_shared_option(
        ev, "--text", help="language models: a UTF-8 text file for perplexity (default: held-out Moby-Dick)"
    )
    add_shared_option(ev, "--context", type=positive_int, default=512, help="language models: window length in tokens")
    add_shared_option(
        ev, "--compare", action="append", default=[], metavar="M", help="language models: another variant"
    )
    add_shared_option(ev, "--max-tokens", type=positive_int, help="language models: use only the first N tokens")

    bm = sub.choices["benchmark"]
    add_shared_option(bm, "--prompt-tokens", type=positive_int, default=128, help="language models: prompt length")
    add_shared_option(bm, "--gen-tokens", type=positive_int, default=64, help="language models: tokens to generate")
    add_shared_option(bm, "--runs", type=positive_int, default=3, help="language models: measured runs")

    p = sub.add_parser("generate", help="stream text from a language model")
    p.add_argument("--model", required=True, help="default-lm, an mlx-lm folder, a .gguf file or a Hugging Face id")
    p.add_argument("--prompt", required=True)
    p.add_argument("--max-tokens", type=positive_int, default=100)
    p.add_argument("--temp", type=float, default=0.0, help="temperature (0 = greedy)")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compare", action="append", default=[], metavar="M", help="another variant, same prompt and seed")
    p.add_argument("--json", action="store_true")

    # `sensitivity` is one command for both kinds of model: engine.quant.cli (before this module
    # in engine.cli.EXTENSIONS) defines it with --model/--group-size/--json; these options are
    # the language models' own, and handler_for picks cmd_sensitivity for a language model.
    p = sub.choices["sensitivity"]
    g = p.add_argument_group("language models")
    g.add_argument("--text", help="text sample (default: held-out Moby-Dick)")
    g.add_argument("--candidates", help="formats to measure (default int2,int3,int4,int6,int8)")
    g.add_argument("--sample-tokens", type=positive_int, default=512, help="tokens measured")
    g.add_argument("--layers", help="comma-separated glob patterns of layers to measure")
    g.add_argument("--budget", type=float, help="average bits per weight for a mixed recipe")
    g.add_argument("--out", help="with --budget: quantize with the chosen mix into this folder")
    g.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    return {"generate": cmd_generate}


def _run(job, args):
    from engine.cli import _run as run

    return run(job, args)


def cmd_evaluate(args) -> int:
    from engine.llm.jobs import PerplexityJob

    # --compare is shared with image evaluation: repeatable or comma-separated.
    models = (args.model, *(m.strip() for c in args.compare for m in c.split(",") if m.strip()))
    o = _run(PerplexityJob(models, args.text, args.context, args.max_tokens), args)
    from engine.llm.perplexity import PerplexityComparison

    rows = PerplexityComparison(o.results).rows()
    first = o.results[0]
    if args.json:
        out = {
            "variant": first.model_name,
            "recipe": first.recipe,
            "text": first.text,
            "context": first.context,
            "tokens": first.tokens,
            "predicted_tokens": first.predicted,
            "windows": first.windows,
            "nll": first.nll,
            "perplexity": first.perplexity,
            "seconds": first.seconds,
            "definition": DEFINITION,
        }
        if len(rows) > 1:
            out["comparison"] = rows
        print(json.dumps(out, indent=2))
        return 0
    print(
        f"{first.text}: {first.tokens:,} tokens, {first.windows} windows of {first.context}, "
        f"{first.predicted:,} predicted tokens"
    )
    for r in rows:
        delta = "" if r is rows[0] else f"  ({r['delta']:+.3f}, {r['delta_pct']:+.2f}%)"
        print(f"  {r['model']:<32} [{r['recipe']}]  perplexity {r['perplexity']:.3f}{delta}")
    return 0


def cmd_benchmark(args) -> int:
    from engine.fileio import write_csv
    from engine.llm.bench import LMBenchSettings
    from engine.llm.jobs import LMBenchmarkJob

    settings = LMBenchSettings(args.prompt_tokens, args.gen_tokens, args.runs, args.warmup)
    o = _run(LMBenchmarkJob(args.model, settings), args)
    r = o.result
    s = r.summary()
    if args.csv:
        write_csv(
            args.csv, ["model", "recipe", "metric", "value"], ([r.model_name, r.recipe, k, v] for k, v in s.items())
        )
    if args.json:
        print(json.dumps({"model": r.model_name, "recipe": r.recipe, **s, "environment": r.environment}, indent=2))
        return 0
    print(
        f"{r.model_name} [{r.recipe}] prompt {settings.prompt_tokens} tokens, generate {settings.gen_tokens}, "
        f"{settings.runs} runs on {r.environment.get('device')}:"
    )
    print(
        f"  prompt {s['prompt_tps']:.1f} tokens/s, generation {s['generation_tps']:.1f} tokens/s "
        f"(min {s['generation_tps_min']:.1f}, max {s['generation_tps_max']:.1f}), "
        f"time to first token {s['ttft_ms']:.1f} ms"
    )
    print(
        f"  peak memory {human_bytes(s['peak_memory_bytes'])} (MLX); size {human_bytes(s.get('size_on_disk_bytes'))}, "
        f"{s['bits_per_weight']:.2f} bits/weight; load {s.get('load_time_s', 0):.3f} s"
    )
    return 0


def cmd_quantize(args) -> int:
    from engine.llm.jobs import QuantizeLanguageModelJob

    if getattr(args, "method", "rtn") != "rtn":
        from engine.llm.methods import run_method_from_args

        return run_method_from_args(args, _run)
    o = _run(
        QuantizeLanguageModelJob(args.model, args.recipe, args.out, args.group_size, overwrite=args.overwrite), args
    )
    print(
        f"{o.source.name} -> {o.card.name}: {human_bytes(o.source.size_on_disk)} -> {human_bytes(o.card.size_on_disk)} "
        f"({o.card.bits_per_weight:.2f} bits/weight, {o.seconds:.2f} s) -> {o.path}"
    )
    return 0


def cmd_info(args) -> int:
    from engine.llm.jobs import LoadLanguageModelJob

    card = _run(LoadLanguageModelJob(args.model), args)
    if args.json:
        d = card.summary()
        d["layers"] = [
            {
                "name": r.name,
                "type": r.type,
                "shape": list(r.shape),
                "format": r.format,
                "params": r.params,
                "bytes": r.bytes,
            }
            for r in card.layers
        ]
        print(json.dumps(d, indent=2))
        return 0
    print(f"{card.name}  ({card.architecture}, {card.recipe})  {card.path}")
    print(
        f"  {card.model_type}: {card.num_layers} layers, hidden {card.hidden_size}, vocabulary {card.vocab_size:,}, "
        f"context {card.context_length or '-'}"
    )
    print(
        f"  {card.params:,} parameters, {human_bytes(card.bytes)} in memory, {human_bytes(card.size_on_disk)} on disk, "
        f"{card.bits_per_weight:.2f} bits/weight"
    )
    for r in card.layers:
        print(f"  {r.name:<36}{r.type:<20}{str(r.shape):<16}{r.format:<12}{r.params:>11,}{human_bytes(r.bytes):>10}")
    return 0


def handler_for(args: argparse.Namespace):
    """The language-model handler for a shared command whose --model is a language model, else None."""
    if args.command not in HANDLERS:  # defined at the end of the module, after the handlers
        return None
    model = getattr(args, "model", None)
    if not isinstance(model, str):
        return None
    from engine.llm.detect import is_language_model

    if getattr(args, "text", None) or is_language_model(model):
        return HANDLERS[args.command]
    return None


def cmd_generate(args) -> int:
    from engine.llm.generate import GenerationSettings
    from engine.llm.jobs import GenerateJob

    settings = GenerationSettings(args.max_tokens, args.temp, args.top_p, args.seed)
    models = (args.model, *args.compare)
    stream = not args.json and len(models) == 1

    def on_partial(chunk) -> None:
        sys.stdout.write(chunk.text)
        sys.stdout.flush()

    from engine.cli import _context
    from engine.jobs import JobContext, Workspace

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


def cmd_sensitivity(args) -> int:
    from engine.llm.jobs import SensitivityJob

    if args.out and args.budget is None:
        raise UserError("--out needs --budget (the average bits per weight to aim for)")
    candidates = tuple(c.strip() for c in (args.candidates or "int2,int3,int4,int6,int8").split(",") if c.strip())
    layers = tuple(x.strip() for x in args.layers.split(",") if x.strip()) if args.layers else None
    job = SensitivityJob(
        args.model,
        args.text,
        candidates,
        args.group_size or 64,
        args.sample_tokens,
        layers,
        args.budget,
        args.out,
        args.overwrite,
    )
    report, result = _run(job, args)
    plan = report.plan(args.budget) if args.budget is not None else {}
    if args.json:
        print(
            json.dumps(
                {
                    "model": report.model_name,
                    "tokens": report.tokens,
                    "bits": dict(report.bits),
                    "layers": [
                        {"layer": r.layer, "params": r.params, "kl": dict(r.costs), "choice": plan.get(r.layer)}
                        for r in report.layers
                    ],
                    "output": result.path if result else None,
                },
                indent=2,
            )
        )
        return 0
    labels = [c for c, _ in report.bits]
    print(f"{report.model_name}: KL(float || layer quantized) on {report.tokens} tokens, {report.seconds:.1f} s")
    print(f"  {'layer':<36}{'params':>10}" + "".join(f"{c:>12}" for c in labels) + ("  choice" if plan else ""))
    for r in report.layers:
        costs = dict(r.costs)
        line = f"  {r.layer:<36}{r.params:>10,}" + "".join(f"{costs[c]:>12.3g}" for c in labels)
        print(line + (f"  {plan[r.layer]}" if plan else ""))
    if result:
        print(f"quantized with the mix -> {result.path} ({result.card.bits_per_weight:.2f} bits/weight)")
    return 0


# Shared commands whose --model may be a language model (engine.cli asks handler_for).
HANDLERS = {
    "evaluate": cmd_evaluate,
    "benchmark": cmd_benchmark,
    "quantize": cmd_quantize,
    "info": cmd_info,
    "sensitivity": cmd_sensitivity,
}
