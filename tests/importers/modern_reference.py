"""torchvision reference models with non-trivial random weights, their logits, and their state dict on disk.

Every norm gets random affine parameters (and BatchNorm random running statistics),
ConvNeXt's layer scales are lifted from 1e-6 to O(0.1..0.5) so the blocks matter,
and ViT/Swin's class token, position embeddings and relative-position tables are
drawn large enough that a misplaced index shows in the logits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tests.torchvision_ref import torchvision  # noqa: F401  (before any torchvision.models import)

# Embeddings and tables under torchvision's, timm's and transformers' names.
TOKENS = (
    "class_token",
    "pos_embedding",
    "relative_position_bias_table",
    "cls_token",
    "pos_embed",
    "distillation_token",
    "position_embeddings",
)


def randomize(
    model: torch.nn.Module, seed: int = 0, residual_gamma: tuple[float, float] | None = None
) -> torch.nn.Module:
    """Non-trivial normalisation statistics and embeddings, in place; returns the model in eval mode.

    ``residual_gamma``: the range of the gamma of each residual branch's closing BatchNorm (deep
    EfficientNets), else left like the other BatchNorms.
    """
    g = torch.Generator().manual_seed(seed)

    def rand(shape, lo, hi):
        return torch.rand(shape, generator=g) * (hi - lo) + lo

    def normal(shape, std):
        return torch.randn(shape, generator=g) * std

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                # He-normal on fan-in: torchvision's own inits (fan-out, 0.01-std heads) let the logits stop
                # depending on the input after 15 blocks, and then any port would "match".
                fan_in = m.weight[0].numel()
                m.weight.copy_(normal(m.weight.shape, (2.0 / fan_in) ** 0.5))
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(rand(m.weight.shape, 0.8, 1.2))
                m.bias.copy_(normal(m.bias.shape, 0.05))
                m.running_mean.copy_(normal(m.running_mean.shape, 0.1))
                m.running_var.copy_(rand(m.running_var.shape, 0.5, 1.5))
            elif isinstance(m, torch.nn.LayerNorm) and m.weight is not None:
                m.weight.copy_(rand(m.weight.shape, 0.6, 1.4))
                m.bias.copy_(normal(m.bias.shape, 0.1))
        for name, m in model.named_modules():
            # Residual branches end small when asked, as trained nets' do;
            # otherwise 40 MBConv blocks grow activations to 1e6 and float32 rounding decides the argmax.
            if (
                residual_gamma
                and name.endswith(".block")
                and isinstance(m, torch.nn.Sequential)
                and isinstance(m[-1], torch.nn.Sequential)
            ):
                bn = m[-1][1] if len(m[-1]) > 1 else None
                if isinstance(bn, torch.nn.BatchNorm2d):
                    bn.weight.copy_(rand(bn.weight.shape, *residual_gamma))
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("layer_scale", "layer_scale_parameter", "gamma"):
                p.copy_(rand(p.shape, 0.1, 0.5))
            elif leaf in TOKENS:
                p.copy_(normal(p.shape, 0.5))
            elif float(p.abs().max()) == 0.0:
                # Zero-initialised tensors (ViT's head, biases) would hide a dropped or misplaced one.
                fan_in = p[0].numel() if p.ndim > 1 else 400
                p.copy_(normal(p.shape, fan_in**-0.5))
    return model.eval()


def reference_input(shape: tuple[int, ...], seed: int = 7) -> np.ndarray:
    """A float32 NCHW batch."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def logits(model: torch.nn.Module, x_nchw: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x_nchw)).numpy()


def save_state_dict(model: torch.nn.Module, path: Path) -> Path:
    """``.safetensors`` through safetensors' torch writer, anything else through ``torch.save``."""
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(path))
    else:
        torch.save(sd, str(path))
    return path


def check_parity(got: np.ndarray, want: np.ndarray) -> float:
    """max |diff| <= 1e-3 * max |reference| and the same argmax per row; returns the relative error.

    With a batch of two or more, the reference logits must also differ between the images by at
    least 2% of their size, so a model whose output no longer depends on the input cannot pass.
    """
    assert got.shape == want.shape, (got.shape, want.shape)
    rel = float(np.abs(got - want).max() / np.abs(want).max())
    assert rel <= 1e-3, rel
    if len(want) > 1:
        spread = float(np.abs(want - want.mean(0)).max())
        assert spread >= 0.02 * np.abs(want).max(), ("reference logits barely depend on the input", spread)
    assert (got.argmax(-1) == want.argmax(-1)).all()
    return rel
