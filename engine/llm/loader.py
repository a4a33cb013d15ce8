"""Load language models: mlx-lm folders, Hugging Face ids and GGUF files.

Loading goes through mlx-lm itself (``mlx_lm.utils.load_model`` and
``load_tokenizer``) so every architecture and quantization mlx-lm reads works
here. On MLX's CPU backend half-precision weights are widened to float32 after
loading: quantized matmuls with float16/bfloat16 activations are 40-60x slower
there, and mlx-lm models compute in the dtype of their weights.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_map

from engine.core.errors import UserError
from engine.core.memory_guard import LOAD_FACTOR, check_memory, files_size
from engine.core.native_gate import check_safetensors
from engine.core.paths import is_hf_id
from engine.image.model_card import LayerRow, layer_rows
from engine.llm.detect import display_name, lm_recipe_name, read_lm_config, resolve_lm_spec

HF_ALLOW_PATTERNS = ["*.json", "model*.safetensors", "*.py", "tokenizer.model", "*.tiktoken", "*.txt", "*.jinja"]


@dataclass(frozen=True)
class LanguageModelCard:
    """What a language model is and how it is stored."""

    name: str
    path: str
    source: str  # "folder", "gguf" or "hub"
    model_type: str
    architecture: str
    recipe: str
    num_layers: int
    hidden_size: int
    vocab_size: int
    context_length: int | None
    params: int
    bytes: int
    size_on_disk: int | None
    dtypes: tuple[str, ...]
    quantization: dict | None
    layers: tuple[LayerRow, ...]
    fingerprint: str
    kind: str = "language"

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.bytes / self.params if self.params else 0.0

    def summary(self) -> dict:
        """Plain values for JSON and tables."""
        return {
            "name": self.name,
            "path": self.path,
            "kind": self.kind,
            "source": self.source,
            "model_type": self.model_type,
            "architecture": self.architecture,
            "recipe": self.recipe,
            "num_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "vocab_size": self.vocab_size,
            "context_length": self.context_length,
            "params": self.params,
            "bytes": self.bytes,
            "size_on_disk": self.size_on_disk,
            "bits_per_weight": self.bits_per_weight,
            "dtypes": list(self.dtypes),
            "quantization": self.quantization,
        }


@dataclass
class LanguageModel:
    """A loaded model with its tokenizer (an mlx-lm TokenizerWrapper) and config."""

    name: str
    path: str
    source: str
    model: nn.Module
    tokenizer: object
    config: dict
    card: LanguageModelCard | None = field(default=None, repr=False)

    @property
    def recipe_name(self) -> str:
        return self.card.recipe if self.card else lm_recipe_name(self.config)

    @property
    def fingerprint(self) -> str:
        return self.card.fingerprint if self.card else ""

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens (no BOS/EOS)."""
        hf = getattr(self.tokenizer, "_tokenizer", self.tokenizer)
        backend = getattr(hf, "backend_tokenizer", None)
        if backend is not None:  # the Rust tokenizer: fast, and no length warnings on long texts
            return list(backend.encode(text, add_special_tokens=False).ids)
        return list(hf.encode(text, add_special_tokens=False))


def on_cpu() -> bool:
    return mx.default_device().type == mx.DeviceType.cpu


def widen_half_precision(model: nn.Module) -> bool:
    """Cast float16/bfloat16 arrays (weights, scales, biases) to float32; True if any changed."""
    changed = False

    def widen(x):
        nonlocal changed
        if isinstance(x, mx.array) and x.dtype in (mx.float16, mx.bfloat16):
            changed = True
            return x.astype(mx.float32)
        return x

    model.update(tree_map(widen, model.parameters()))
    if changed:
        mx.eval(model.parameters())
    return changed


def weight_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(path.glob("model*.safetensors"))


def guard_memory(path: Path, factor: float, action: str) -> None:
    """Refuse (UserError) before loading weights the machine cannot hold; see engine.core.memory_guard."""
    check_memory(files_size(weight_files(path)), factor, action, path)


def fingerprint(path: Path) -> str:
    """A cheap identity for a model on disk: config plus each weight file's size and edges."""
    h = hashlib.sha256()
    cfg = path / "config.json"
    if cfg.is_file():
        h.update(cfg.read_bytes())
    for f in weight_files(path):
        size = f.stat().st_size
        h.update(f"{f.name}:{size}".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(1 << 20))
            if size > 1 << 21:
                fh.seek(-(1 << 20), 2)
                h.update(fh.read())
    return h.hexdigest()


def language_model_card(lm: LanguageModel) -> LanguageModelCard:
    rows, dtypes = layer_rows(lm.model)
    cfg = lm.config
    if cfg.get("gguf"):  # converted from a GGUF file: each weight's GGUF type before its MLX format
        from engine.llm.gguf import gguf_layer_rows

        rows = gguf_layer_rows(rows, cfg)
    p = Path(lm.path)
    size = sum(f.stat().st_size for f in weight_files(p)) if p.exists() else None
    arch = cfg.get("architectures") or [cfg.get("model_type", "?")]
    quant = cfg.get("quantization")
    return LanguageModelCard(
        name=lm.name,
        path=lm.path,
        source=lm.source,
        model_type=str(cfg.get("model_type", "?")),
        architecture=str(arch[0] if isinstance(arch, list) and arch else arch),
        recipe=lm_recipe_name(cfg),
        num_layers=int(cfg.get("num_hidden_layers") or len(getattr(lm.model, "layers", []))),
        hidden_size=int(cfg.get("hidden_size") or 0),
        vocab_size=int(cfg.get("vocab_size") or 0),
        context_length=cfg.get("max_position_embeddings"),
        params=sum(r.params for r in rows),
        bytes=sum(r.bytes for r in rows),
        size_on_disk=size,
        dtypes=tuple(sorted(dtypes)),
        quantization=dict(quant) if isinstance(quant, dict) else None,
        layers=tuple(rows),
        fingerprint=fingerprint(p) if p.exists() else "",
    )


def _download(repo: str, progress: Callable[[float, str], None] | None) -> Path:
    """Fetch a Hugging Face repository's model files into the local cache (the network path)."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise UserError(f"'{repo}' is not a local path, and huggingface_hub is not installed to download it") from None
    if progress:
        progress(0.05, f"downloading {repo} from the Hugging Face Hub")
    try:
        return Path(snapshot_download(repo, allow_patterns=HF_ALLOW_PATTERNS))
    except Exception as exc:  # network, auth, missing repo: all one line for the user
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"could not download '{repo}' from the Hugging Face Hub ({first})") from None


def load_language_model(
    spec: str | Path, progress: Callable[[float, str], None] | None = None, widen: bool | None = None
) -> LanguageModel:
    """Load 'default-lm', an mlx-lm folder, a .gguf file or a Hugging Face id.

    Args:
        spec: what to load.
        progress: optional progress(fraction, message).
        widen: cast half-precision arrays to float32 (default: on the CPU backend).

    Raises:
        UserError: not found, not a language model, unsupported architecture, corrupt weights.
    """
    from mlx_lm.utils import load_model, load_tokenizer

    text = resolve_lm_spec(spec)
    p = Path(text)
    source = "folder"
    if p.exists():  # a hub id is checked by size only once downloaded
        guard_memory(p, LOAD_FACTOR * (2 if widen or (widen is None and on_cpu()) else 1), "load")
    if p.is_file():
        if p.suffix.lower() != ".gguf":
            raise UserError("not a language model: expected an mlx-lm folder or a .gguf file", p)
        from engine.llm.gguf import load_gguf

        if progress:
            progress(0.1, f"reading {p.name}")
        step = (lambda f, m: progress(0.1 + 0.8 * f, m)) if progress else None
        model, tokenizer, config = load_gguf(p, step)
        lm = LanguageModel(p.stem, str(p), "gguf", model, tokenizer, config)
    else:
        if not p.exists():
            if not is_hf_id(text):
                raise UserError("model not found", p)
            p = _download(text, progress)
            source = "hub"
            guard_memory(p, LOAD_FACTOR, "load")
        if not p.is_dir() or read_lm_config(p) is None:
            raise UserError("not an mlx-lm model folder: config.json with 'model_type' is missing", p)
        if not weight_files(p):
            raise UserError("no model*.safetensors weights in the folder", p)
        for f in weight_files(p):
            check_safetensors(f)  # stated sizes against the file before MLX's native reader
        if progress:
            progress(0.1, f"loading {p.name}")
        try:
            model, config = load_model(p)
        except ValueError as exc:
            raise UserError(f"cannot build the model ({str(exc).splitlines()[0]})", p) from None
        except (RuntimeError, OSError) as exc:
            raise UserError(f"weights are truncated or corrupt ({str(exc).splitlines()[0]})", p) from None
        try:
            tokenizer = load_tokenizer(p, eos_token_ids=config.get("eos_token_id"))
        except Exception as exc:  # transformers raises many kinds
            raise UserError(f"cannot load the tokenizer ({str(exc).splitlines()[0]})", p) from None
        name = text if source == "hub" else display_name(p)
        lm = LanguageModel(name, str(p), source, model, tokenizer, config)
    lm.card = language_model_card(lm)
    if widen if widen is not None else on_cpu():
        widen_half_precision(lm.model)
    if progress:
        progress(1.0, f"loaded {lm.name}")
    return lm


def parameter_count(model: nn.Module) -> int:
    return sum(v.size for _, v in tree_flatten(model.parameters()))
