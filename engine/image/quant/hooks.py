"""Route calls of chosen submodules through a hook, without changing the model's tree.

MLX has no forward hooks. Here a module's class is swapped, for the duration of
a ``with`` block, for a subclass whose ``__call__`` goes through the hook; the
parameter tree (and so every name, gradient and saved file) stays the same.
Used to trace the execution order, find Conv -> BatchNorm pairs, observe and
fake-quantize activations, and capture feature maps for distillation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

# hook(path, forward, x, *args, **kwargs) -> output; ``forward`` runs the original call.
Hook = Callable[..., mx.array]


def _hooked_class(cls: type, path: str, hook: Hook) -> type:
    def __call__(self, *args, **kwargs):  # noqa: N807
        def forward(*a, **k):
            return cls.__call__(self, *a, **k)

        return hook(path, forward, *args, **kwargs)

    return type(
        cls.__name__, (cls,), {"__call__": __call__, "__module__": cls.__module__, "__qualname__": cls.__qualname__}
    )


@contextlib.contextmanager
def hooked(model: nn.Module, hooks: dict[str, Hook]) -> Iterator[None]:
    """Within the block, calls of ``model``'s submodule at each path go through its hook.

    Raises:
        KeyError: a path names no submodule.
    """
    modules = dict(model.named_modules())
    swapped = []
    try:
        for path, hook in hooks.items():
            module = modules[path]
            cls = type(module)
            module.__class__ = _hooked_class(cls, path, hook)
            swapped.append((module, cls))
        yield
    finally:
        for module, cls in reversed(swapped):
            module.__class__ = cls


def replace_modules(model: nn.Module, replacements: dict[str, nn.Module]) -> None:
    """Swap the leaf modules at the given paths for new ones."""
    from mlx.utils import tree_map_with_path

    if not replacements:
        return
    leaves = tree_map_with_path(lambda p, m: replacements.get(p, m), model.leaf_modules(), is_leaf=nn.Module.is_module)
    model.update_modules(leaves)


def weight_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Submodules that own arrays (convs, norms, linears), in definition order."""
    out = []
    for path, module in reversed(model.named_modules()):
        if path and any(isinstance(v, mx.array) for v in module.values()):
            out.append((path, module))
    return out


@dataclass(frozen=True)
class Call:
    """One call of a traced module: its input and output arrays (kept alive for identity checks)."""

    path: str
    input: mx.array
    output: mx.array


def trace_calls(model: nn.Module, x: mx.array, paths: list[str] | None = None, evaluate: bool = True) -> list[Call]:
    """Run ``model(x)`` once and list the calls of the given modules (default: every weight module) in order.

    With ``evaluate=False`` the forward only builds MLX's lazy graph: the call order, the shapes and
    which array feeds which call are all known without computing a single value.
    """
    calls: list[Call] = []

    def record(path, forward, inp, *args, **kwargs):
        out = forward(inp, *args, **kwargs)
        calls.append(Call(path, inp, out))
        return out

    paths = paths if paths is not None else [p for p, _ in weight_modules(model)]
    with hooked(model, {p: record for p in paths}):
        out = model(x)
        if evaluate:
            mx.eval(out)
    return calls


def example_input(input_shape: tuple[int, int, int], batch: int = 2, seed: int = 0) -> mx.array:
    """A seeded standard-normal NHWC batch for tracing and exactness checks."""
    h, w, c = input_shape
    return mx.random.normal((batch, h, w, c), key=mx.random.key(seed))
