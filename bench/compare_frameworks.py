"""MLX variants (fp32/fp16/int8/int4) against each other, PyTorch CPU and ONNX Runtime, in one run.

    python bench/compare_frameworks.py                         # the default model, batch 1 and 32
    python bench/compare_frameworks.py --batch-sizes 1,8,64 --threads 2

The PyTorch and ONNX Runtime models are the same network with the same
weights: a torch.nn twin of the small CNN gets the MLX weights (kernels
transposed to OIHW), and an ONNX graph is written with onnx.helper from the
same weights (Conv, BatchNormalization, Relu, GlobalAveragePool, Gemm).
Their logits are checked against MLX fp32 before anything is timed. Engines
take turns in rounds so drift and other load hit all of them alike; each
figure is the median per-iteration latency with the output forced
(``mx.eval`` / ``torch.no_grad`` + returned tensor / ``session.run``).
Ratios are against MLX fp32 at the same batch size (> 1 = slower).
PyTorch and ONNX Runtime run with ``--threads`` threads (default 1, like
MLX's single-threaded CPU BLAS on Linux); torch and onnxruntime are used
only when installed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from common import median, model_bundle


def mlx_variant(bundle, recipe_name: str):
    """``bundle`` quantized in memory with ``recipe_name`` (fp32: the bundle itself)."""
    import dataclasses

    from engine.image.bundle import load_bundle
    from engine.image.quant.apply import quantize_model
    from engine.image.quant.recipes import make_recipe

    if recipe_name == "fp32":
        return bundle
    fresh = load_bundle(bundle.path)
    qconfig = quantize_model(fresh.model, make_recipe(recipe_name))
    return dataclasses.replace(fresh, quantization=qconfig, name=f"{bundle.name}-{recipe_name}", _hash=None)


# -- PyTorch twin -------------------------------------------------------------------------


def torch_twin(bundle):
    """torch.nn small CNN with the bundle's weights (PyTorch names match the MLX ones)."""
    import torch
    from mlx.utils import tree_flatten
    from torch import nn

    cfg = bundle.arch_config
    w1, w2, w3, w4 = cfg.get("widths", (16, 32, 64, 128))
    cin, ncls = cfg.get("in_channels", 1), cfg.get("num_classes", 10)

    class Block(nn.Module):
        def __init__(self, i, o, k, stride=1, groups=1):
            super().__init__()
            self.conv = nn.Conv2d(i, o, k, stride, k // 2, groups=groups, bias=False)
            self.bn = nn.BatchNorm2d(o, eps=1e-5)

        def forward(self, x):
            return torch.relu(self.bn(self.conv(x)))

    class Twin(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = Block(cin, w1, 3)
            self.dw = Block(w1, w1, 3, 2, groups=w1)
            self.pw = Block(w1, w2, 1)
            self.conv3 = Block(w2, w3, 3, 2)
            self.conv4 = Block(w3, w4, 3, 2)
            self.head = nn.Linear(w4, ncls)

        def forward(self, x):
            for b in (self.stem, self.dw, self.pw, self.conv3, self.conv4):
                x = b(x)
            return self.head(x.mean(dim=(2, 3)))

    model = Twin().eval()
    state = {}
    for k, v in tree_flatten(bundle.model.parameters()):
        a = np.asarray(v, dtype=np.float32)
        state[k] = torch.from_numpy(a.transpose(0, 3, 1, 2).copy() if a.ndim == 4 else a)
    missing = model.load_state_dict(state, strict=False)
    assert not missing.unexpected_keys, missing.unexpected_keys
    assert all(k.endswith("num_batches_tracked") for k in missing.missing_keys), missing.missing_keys
    return model


# -- ONNX graph ---------------------------------------------------------------------------


def onnx_model(bundle):
    """The same network as an ONNX graph (NCHW input), written with onnx.helper."""
    import onnx
    from mlx.utils import tree_flatten
    from onnx import TensorProto, helper, numpy_helper

    w = {k: np.asarray(v, dtype=np.float32) for k, v in tree_flatten(bundle.model.parameters())}
    nodes, inits = [], []

    def init(name, array):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    x = "input"
    for name, stride in (("stem", 1), ("dw", 2), ("pw", 1), ("conv3", 2), ("conv4", 2)):
        k = w[f"{name}.conv.weight"].transpose(0, 3, 1, 2)  # OHWI -> OIHW (depthwise: C,1,kh,kw)
        groups = k.shape[0] if name == "dw" else 1
        pad = k.shape[2] // 2
        nodes.append(
            helper.make_node(
                "Conv",
                [x, init(f"{name}.w", k)],
                [f"{name}.c"],
                strides=[stride, stride],
                pads=[pad] * 4,
                group=groups,
            )  # fmt: skip
        )
        bn = [init(f"{name}.{p}", w[f"{name}.bn.{p}"]) for p in ("weight", "bias", "running_mean", "running_var")]
        nodes.append(helper.make_node("BatchNormalization", [f"{name}.c", *bn], [f"{name}.b"], epsilon=1e-5))
        nodes.append(helper.make_node("Relu", [f"{name}.b"], [f"{name}.r"]))
        x = f"{name}.r"
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"]))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], axis=1))
    nodes.append(helper.make_node("Gemm", ["flat", init("head.w", w["head.weight"]), init("head.b", w["head.bias"])],
                                  ["logits"], transB=1))  # fmt: skip
    h, wd = bundle.preprocessing.input_size
    graph = helper.make_graph(
        nodes,
        "small_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", bundle.preprocessing.channels, h, wd])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", len(bundle.labels)])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


# -- timing -------------------------------------------------------------------------------


def timed(fn, iters: int) -> list[float]:
    out = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="default", help="a small_cnn bundle (default: the shipped model)")
    ap.add_argument("--recipes", default="fp32,fp16,int8,int4")
    ap.add_argument("--batch-sizes", default="1,32")
    ap.add_argument("--iters", type=int, default=0, help="iterations per engine per round (default: ~0.3 s of work)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="threads for PyTorch and ONNX Runtime")
    args = ap.parse_args()

    import mlx.core as mx

    from engine.image.benchmark import benchmark_input
    from engine.measure.environment import environment

    base = model_bundle(args.model, None, None, None)
    engines: dict[str, object] = {}
    for r in args.recipes.split(","):
        engines[f"MLX {r.strip()}"] = mlx_variant(base, r.strip())
    twin = sess = None
    notes = []
    if base.arch != "small_cnn":
        notes.append(f"no PyTorch/ONNX twin for '{base.arch}': MLX variants only")
    else:
        try:
            import torch

            torch.set_num_threads(args.threads)
            twin = torch_twin(base)
            notes.append(f"torch {torch.__version__} ({args.threads} thread{'s' if args.threads > 1 else ''})")
        except ImportError:
            notes.append("PyTorch not installed: skipped")
        try:
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = args.threads
            so.inter_op_num_threads = 1
            sess = ort.InferenceSession(onnx_model(base).SerializeToString(), so, providers=["CPUExecutionProvider"])
            notes.append(f"onnxruntime {ort.__version__} ({args.threads} thread{'s' if args.threads > 1 else ''})")
        except ImportError:
            notes.append("onnxruntime (or onnx) not installed: skipped")

    env = environment()
    print(
        f"{base.name}: MLX {env['mlx_version']} on {env['device']} ({env['cpu']}, {env['cpu_count']} cores); "
        + "; ".join(notes)
    )

    # Same answers first.
    x_nhwc = benchmark_input(base, 8, seed=1)
    ref = base.predict_logits(x_nhwc)
    print("agreement with MLX fp32 on 8 random inputs (max |logit diff|, top-1 agreement):")
    for name, b in engines.items():
        out = b.predict_logits(x_nhwc)
        print(f"  {name:<14}{np.abs(out - ref).max():>12.2e}{(out.argmax(1) == ref.argmax(1)).mean():>8.0%}")
    x_nchw = np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))
    if twin is not None:
        import torch

        with torch.no_grad():
            out = twin(torch.from_numpy(x_nchw)).numpy()
        print(f"  {'PyTorch':<14}{np.abs(out - ref).max():>12.2e}{(out.argmax(1) == ref.argmax(1)).mean():>8.0%}")
        assert np.allclose(out, ref, atol=1e-3), "the PyTorch twin does not compute the same function"
    if sess is not None:
        out = sess.run(None, {"input": x_nchw})[0]
        print(f"  {'ONNX Runtime':<14}{np.abs(out - ref).max():>12.2e}{(out.argmax(1) == ref.argmax(1)).mean():>8.0%}")
        assert np.allclose(out, ref, atol=1e-3), "the ONNX graph does not compute the same function"

    for batch in (int(b) for b in args.batch_sizes.split(",")):
        xb = benchmark_input(base, batch)
        xm = mx.array(xb)
        mx.eval(xm)
        xt = np.ascontiguousarray(xb.transpose(0, 3, 1, 2))
        runners = {name: (lambda b=b, xm=xm: mx.eval(b.forward(xm))) for name, b in engines.items()}
        if twin is not None:
            import torch

            xt_t = torch.from_numpy(xt)

            def run_torch(xt_t=xt_t):
                with torch.no_grad():
                    return twin(xt_t)

            runners["PyTorch CPU"] = run_torch
        if sess is not None:
            runners["ONNX Runtime"] = lambda xt=xt: sess.run(None, {"input": xt})
        for fn in runners.values():  # warm-up
            timed(fn, 3)
        iters = args.iters or max(5, int(300 / max(median(timed(runners["MLX fp32"], 3)), 1e-3)))
        lat = {name: [] for name in runners}
        for k in range(args.rounds):
            order = list(runners) if k % 2 == 0 else list(reversed(runners))
            for name in order:
                lat[name] += timed(runners[name], iters)
        ref_ms = statistics.median(lat["MLX fp32"])
        print(f"\nbatch {batch}: {args.rounds} rounds x {iters} iterations per engine, engines interleaved")
        print(f"  {'engine':<14}{'p50 ms':>10}{'p90 ms':>10}{'images/s':>11}{'time vs MLX fp32':>18}")
        for name, values in lat.items():
            p50 = statistics.median(values)
            p90 = float(np.percentile(values, 90))
            print(f"  {name:<14}{p50:>10.3f}{p90:>10.3f}{batch * 1000 / p50:>11.1f}{p50 / ref_ms:>17.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
