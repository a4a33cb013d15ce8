"""The language-model halves of the shared commands (evaluate, benchmark, quantize, info, sensitivity)."""

from __future__ import annotations

import argparse
import json

from engine.core.errors import UserError
from engine.core.units import human_bytes


def is_language(args: argparse.Namespace) -> bool:
    """True when a shared command's --model is a language model (the kind is decided by engine.kinds)."""
    from engine.kinds import LANGUAGE, try_kind_of

    model = getattr(args, "model", None)
    return bool(getattr(args, "text", None)) or (isinstance(model, str) and try_kind_of(model) == LANGUAGE)


def _run(job, args):
    from engine.cli import _run as run

    return run(job, args)


def cmd_evaluate(args) -> int:
    from engine.jobs.language import PerplexityJob

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
            "bos": first.bos,
            "definition": _definition(),
        }
        if len(rows) > 1:
            out["comparison"] = rows
        print(json.dumps(out, indent=2))
        return 0
    print(
        f"{first.text}: {first.tokens:,} tokens, {first.windows} windows of {first.context}, "
        f"{first.predicted:,} predicted tokens" + (", each window led by BOS" if first.bos else "")
    )
    for r in rows:
        delta = "" if r is rows[0] else f"  ({r['delta']:+.3f}, {r['delta_pct']:+.2f}%)"
        print(f"  {r['model']:<32} [{r['recipe']}]  perplexity {r['perplexity']:.3f}{delta}")
    return 0


def cmd_benchmark(args) -> int:
    from engine.core.fileio import write_csv
    from engine.jobs.language import LMBenchmarkJob
    from engine.llm.bench import LMBenchSettings

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
    from engine.jobs.language import QuantizeLanguageModelJob

    if getattr(args, "method", "rtn") != "rtn":
        return _quantize_with_method(args)
    o = _run(
        QuantizeLanguageModelJob(args.model, args.recipe, args.out, args.group_size, overwrite=args.overwrite), args
    )
    print(
        f"{o.source.name} -> {o.card.name}: {human_bytes(o.source.size_on_disk)} -> {human_bytes(o.card.size_on_disk)} "
        f"({o.card.bits_per_weight:.2f} bits/weight, {o.seconds:.2f} s) -> {o.path}"
    )
    return 0


def cmd_info(args) -> int:
    from engine.jobs.language import LoadLanguageModelJob

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


def cmd_sensitivity(args) -> int:
    from engine.jobs.language import SensitivityJob

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


def _definition() -> str:
    from engine.llm.perplexity import DEFINITION

    return DEFINITION


def _quantize_with_method(args) -> int:
    """``quantize --model LM --recipe intN --method gptq|awq --calib TEXT [--calib-size N]`` (prints one line)."""
    from engine.image.quant.formats import parse_spec
    from engine.jobs.language import QuantizeLMMethodJob
    from engine.llm.methods import DWQ_LEARNING_RATE, DWQ_STEPS

    spec = parse_spec(args.recipe, args.group_size)
    if spec.mode != "affine":
        raise UserError(f"--method {args.method} on a language model takes an affine recipe (int2 ... int8)")
    if not args.calib:
        raise UserError(f"--method {args.method} needs --calib TEXT (any UTF-8 text file)")
    samples = args.calib_size or None  # None: the method's default (DWQ: one fresh chunk per row)
    dwq = {"dwq_steps": args.dwq_steps or DWQ_STEPS, "dwq_learning_rate": args.dwq_learning_rate or DWQ_LEARNING_RATE}
    if args.method != "dwq" and (args.dwq_steps or args.dwq_learning_rate):
        raise UserError(f"--dwq-steps and --dwq-learning-rate are options of --method dwq, not {args.method}")
    job = QuantizeLMMethodJob(
        args.model, args.method, args.calib, args.out, spec.bits, spec.group_size, samples, overwrite=args.overwrite,
        **dwq,
    )  # fmt: skip
    r = _run(job, args)
    print(
        f"{args.model} -> {r.path}: {r.method} int{r.bits}/g{r.group_size} on {r.calib_samples} chunks of "
        f"{r.calib_name} ({r.bits_per_weight:.2f} bits/weight, {r.seconds:.1f} s)"
    )
    return 0
