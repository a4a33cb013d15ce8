"""The command line: the same jobs as the GUI, run synchronously, no Qt imported.

Like mlx-lm's ``cli.py``: ``COMMANDS`` names each command's module and one-line help, and
only the chosen command's module is imported; it owns its parser (``add_arguments``) and its
printing (``run``). Commands that serve both kinds of model ask ``engine.kinds`` which kind
``--model`` is.

Exit codes: 0 success, 1 bad input or runtime error (one line on stderr),
2 usage error (argparse), 130 interrupted. ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass

from engine.core.errors import Cancelled, UserError


@dataclass(frozen=True)
class Command:
    module: str  # engine.cli.<module>
    help: str


COMMANDS: dict[str, Command] = {
    "demo": Command("demo", "the default workflow headless: fp32/fp16/int8/int4 quantize, evaluate, benchmark"),
    "import": Command("import_model", "import a checkpoint (state dict, .keras/.h5 or .onnx) into a model bundle"),
    "info": Command("info", "the model card of a model (image bundle or language model)"),
    "quantize": Command("quantize", "quantize a model with a recipe (image bundle or language model)"),
    "predict": Command("predict", "top-k predictions for images or a preprocessed tensor"),
    "evaluate": Command("evaluate", "accuracy and per-class metrics on a labelled dataset; perplexity for LMs"),
    "benchmark": Command("benchmark", "latency, throughput, memory and size of a model; tokens/s for LMs"),
    "gradcam": Command("gradcam", "Grad-CAM heatmaps of an image under a model and its variants, side by side"),
    "sensitivity": Command("sensitivity", "per-layer sensitivity: quantize one layer at a time, KL and top-1 flips"),
    "autoquant": Command("autoquant", "search per-layer bit widths for the smallest model within a budget"),
    "actsim": Command("actsim", "int8 activation simulation: observers x calibration-set sizes"),
    "intsim": Command("intsim", "full-integer int8 simulation (per-channel weights, every tensor int8, as ORT QDQ)"),
    "finetune": Command("finetune", "quantization-aware fine-tuning with optional distillation from a teacher"),
    "sweep": Command("sweep", "quantize with each recipe, evaluate and benchmark every variant; CSV + Pareto PNGs"),
    "throughput": Command("throughput", "latency and throughput of one model across batch sizes"),
    "generate": Command("generate", "stream text from a language model"),
    "serve": Command("serve", "serve a model over HTTP (needs the 'serve' extra)"),
}


class _Parser(argparse.ArgumentParser):
    """argparse that keeps usage errors at exit code 2 with one line."""

    def error(self, message: str):  # noqa: D401
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def top_parser() -> argparse.ArgumentParser:
    """The global options and the command list (no command module is imported)."""
    listing = "\n".join(f"  {name:<12} {c.help}" for name, c in COMMANDS.items())
    parser = _Parser(
        prog="main.py",
        usage="main.py [--debug] [--progress] COMMAND [options]",
        description="MLX Quant Studio: quantize, evaluate and benchmark models with MLX.",
        epilog=f"commands:\n{listing}\n\n'main.py COMMAND --help' lists a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--progress", action="store_true", help="print progress to stderr")
    return parser


def command_parser(name: str):
    """(the command's module, its parser): imports that one module only."""
    cmd = COMMANDS[name]
    module = importlib.import_module(f"engine.cli.{cmd.module}")
    parser = _Parser(prog=f"main.py {name}", description=getattr(module, "DESCRIPTION", cmd.help))
    module.add_arguments(parser)
    return module, parser


def parse(argv: list[str]):
    """(module, args) for a command line, or None without a command; usage errors exit with code 2."""
    top = top_parser()
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 1
    ns = top.parse_args(argv[:i])
    if i == len(argv):
        top.print_help()
        return None
    name = argv[i]
    if name not in COMMANDS:
        top.error(f"argument COMMAND: invalid choice: '{name}' (choose from {', '.join(COMMANDS)})")
    module, parser = command_parser(name)
    args = parser.parse_args(argv[i + 1 :])
    args.command, args.debug, args.progress = name, ns.debug, ns.progress
    return module, args


def _context(args):
    from engine.runtime import JobContext

    if not args.progress:
        return JobContext()
    last = {"text": ""}

    def progress(fraction: float, message: str) -> None:
        text = f"[{100 * fraction:5.1f}%] {message}"
        if text != last["text"]:
            print(text, file=sys.stderr, flush=True)
            last["text"] = text

    return JobContext(progress=progress)


def _run(job, args):
    from engine.runtime import Workspace

    return job.run(_context(args), Workspace())


def main(argv: list[str] | None = None) -> int:
    parsed = parse(list(sys.argv[1:] if argv is None else argv))
    if parsed is None:
        return 2
    module, args = parsed
    try:
        return module.run(args)
    except UserError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Cancelled:
        print("error: cancelled", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`); stay quiet like other Unix tools.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # a bug or an environment problem: still one line
        if args.debug:
            raise
        from engine.core.oserrors import as_user_error

        translated = as_user_error(exc)  # a full disk, a read-only target...: the cause in words
        if translated is not None:
            print(f"error: {translated}", file=sys.stderr)
            return 1
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"error: {type(exc).__name__}: {msg} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1
