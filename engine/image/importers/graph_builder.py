"""Shared by the Keras and ONNX importers: collect graph nodes and weights, then make a bundle."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from engine.core.errors import UserError
from engine.image.bundle import ModelBundle, check_weights_fit
from engine.image.data.preprocess import Preprocessing
from engine.image.models.graph import GraphConfig, GraphModel


def require(module: str, path: Path):
    """Import an optional reader library or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"reading this file needs the '{module}' package (pip install {module})", path) from None


def _unique(base: str, used: set[str], sep: str) -> str:
    out, i = base, 1
    while out in used:
        i += 1
        out = f"{base}{sep}{i}"
    used.add(out)
    return out


def open_source(path, what: str, progress, should_stop) -> tuple[Path, Callable, Callable]:
    """The importers' common start: the path, a progress callback and a stop check that are never None.

    Raises:
        UserError: the file does not exist.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{what} file not found", path)
    return path, progress or (lambda f, m: None), should_stop or (lambda: False)


class GraphBuilder:
    """Accumulates nodes (NHWC semantics) and their parameters under ``layers.<key>``/``consts.<key>``."""

    def __init__(self, source: str):
        self.source = source
        self.nodes: list[dict] = []
        self.weights: dict[str, np.ndarray] = {}
        self._keys: set[str] = set()
        self._names: set[str] = set()
        # Extra fields of the graph input, e.g. {"batch_one": True} (see GraphModel).
        self.input_attrs: dict = {}

    def key(self, name: str) -> str:
        """A unique parameter key without dots, readable in the model card."""
        return _unique(re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_") or "node", self._keys, "_")

    def fresh(self, name: str) -> str:
        """A unique node name."""
        return _unique(name, self._names, "#")

    def add(self, op: str, inputs: list[str], name: str, **attrs) -> str:
        name = self.fresh(name)
        self.nodes.append({"name": name, "op": op, "inputs": list(inputs), "attrs": attrs})
        return name

    def add_param(self, op: str, inputs: list[str], name: str, params: dict[str, np.ndarray], **attrs) -> str:
        key = self.key(name)
        for pname, value in params.items():
            self.weights[f"layers.{key}.{pname}"] = np.ascontiguousarray(value, dtype=np.float32)
        return self.add(op, inputs, name, key=key, **attrs)

    def add_const(self, value: np.ndarray, name: str) -> str:
        key = self.key(name)
        value = np.ascontiguousarray(value, dtype=np.float32)
        self.weights[f"consts.{key}"] = value
        return self.add("const", [], name, key=key, shape=list(value.shape))

    def conv(self, x: str, name: str, w_ohwi: np.ndarray, bias, stride, pads, dilation=(1, 1), groups=1) -> str:
        o, kh, kw, i = w_ohwi.shape
        params = {"weight": w_ohwi}
        if bias is not None:
            params["bias"] = bias
        return self.add_param(
            "conv",
            [x],
            name,
            params,
            kernel=[kh, kw],
            stride=[int(s) for s in stride],
            pads=[int(p) for p in pads],
            dilation=[int(d) for d in dilation],
            groups=int(groups),
            bias=bias is not None,
            **{"in": int(i * groups), "out": int(o)},
        )

    def batchnorm(self, x: str, name: str, gamma, beta, mean, var, eps: float) -> str:
        c = len(mean)
        gamma = np.ones(c, np.float32) if gamma is None else gamma
        beta = np.zeros(c, np.float32) if beta is None else beta
        params = {"weight": gamma, "bias": beta, "running_mean": mean, "running_var": var}
        return self.add_param("bn", [x], name, params, channels=c, eps=float(eps))

    def linear(self, x: str, name: str, w_out_in: np.ndarray, bias) -> str:
        params = {"weight": w_out_in}
        if bias is not None:
            params["bias"] = bias
        out, inp = w_out_in.shape
        return self.add_param("linear", [x], name, params, bias=bias is not None, **{"in": int(inp), "out": int(out)})

    def bundle(
        self,
        input_name: str,
        input_hwc: tuple[int, int, int],
        output: str,
        num_classes: int,
        labels: list[str] | None,
        name: str,
        path: Path,
        preprocessing: Preprocessing,
        extra_source: dict,
    ) -> ModelBundle:
        config = GraphConfig(
            inputs=[{"name": input_name, "shape": list(input_hwc), **self.input_attrs}],
            nodes=self.nodes,
            outputs=[output],
            source=self.source,
            num_classes=num_classes,
        )
        model = GraphModel(config)
        check_weights_fit(model, self.weights, path)
        model.load_weights([(k, mx.array(v)) for k, v in self.weights.items()], strict=True)
        model.eval()
        mx.eval(model.parameters())
        labels = labels or [str(i) for i in range(num_classes)]
        if len(labels) != num_classes:
            raise UserError(f"{len(labels)} labels given but the model has {num_classes} outputs", path)
        return ModelBundle(
            name=name or path.stem,
            arch="graph",
            arch_config=config.to_dict(),
            preprocessing=preprocessing,
            labels=list(labels),
            model=model,
            source={"kind": "imported", "checkpoint": str(path.resolve()), "format": self.source, **extra_source},
        )


def parameter_count(model) -> int:
    return sum(v.size for _, v in tree_flatten(model.parameters()))
