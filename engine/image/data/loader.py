"""Decode ahead of the model: a background thread turns files into float32 batches.

The thread does only PIL and numpy work (decode, resize, corrupt, normalise), never MLX:
MLX arrays are thread-local, and the model runs on the engine thread. PIL's decoders and
resamplers and MLX's evaluation all release the GIL, so decoding batch i+1 overlaps the
model's work on batch i.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from engine.core.errors import Cancelled, UserError
from engine.image.data.preprocess import Preprocessing

if TYPE_CHECKING:
    from engine.image.data.dataset import ImageDataset

# (uint8 HWC image at the model's size, dataset index) -> uint8 HWC image; numpy/PIL only.
ImageTransform = Callable[[np.ndarray, int], np.ndarray]

_POLL_S = 0.05


@dataclass(frozen=True)
class Batch:
    """Model input for one batch and what became of each requested item."""

    x: np.ndarray  # float32 NHWC, normalised
    labels: np.ndarray
    indices: np.ndarray  # dataset indices of the rows of x
    skipped: tuple[tuple[str, str], ...]  # (identifier, reason) of unreadable items
    end: int  # one past the last dataset index this batch covered


def decode_batch(
    dataset: ImageDataset,
    prep: Preprocessing,
    indices: range,
    transform: ImageTransform | None = None,
    pool: ThreadPoolExecutor | None = None,
) -> Batch:
    """Decode, transform and normalise the items at ``indices``; unreadable ones are skipped."""

    def one(i: int):
        try:
            img = dataset.load_uint8(i, prep)
            if transform is not None:
                img = transform(img, i)
            return img, None
        except UserError as exc:
            return None, (dataset.identifier(i), str(exc))

    results = list(pool.map(one, indices)) if pool is not None else [one(i) for i in indices]
    kept = [i for i, (img, _) in zip(indices, results, strict=True) if img is not None]
    skipped = tuple(why for _, why in results if why is not None)
    h, w = prep.input_size
    if kept:
        x = prep.normalize(np.stack([img for img, _ in results if img is not None]))
    else:
        x = np.zeros((0, h, w, prep.channels), dtype=np.float32)
    idx = np.asarray(kept, dtype=np.int64)
    return Batch(x, dataset.labels[idx], idx, skipped, indices.stop)


class DecodeAhead:
    """Iterate decoded batches while a background thread prepares the next ones.

    Args:
        dataset, prep: what to decode and how.
        batch_size: items per batch.
        limit: decode only the first ``limit`` items.
        transform: optional per-image transform (e.g. a corruption), numpy/PIL only.
        prefetch: batches decoded ahead; 0 decodes synchronously on the caller's thread.
        workers: decoding threads inside the background thread (1 is enough when the
            model is slower than decoding).
        should_stop: polled while waiting; a true answer stops the thread and raises
            Cancelled.

    Use as an iterator inside ``with``; leaving the block stops and joins the thread.
    """

    def __init__(
        self,
        dataset: ImageDataset,
        prep: Preprocessing,
        batch_size: int,
        limit: int | None = None,
        transform: ImageTransform | None = None,
        prefetch: int = 2,
        workers: int = 1,
        should_stop: Callable[[], bool] | None = None,
    ):
        if batch_size < 1:
            raise UserError(f"batch size must be at least 1, not {batch_size}")
        self.dataset = dataset
        self.prep = prep
        self.batch_size = batch_size
        self.n = len(dataset) if limit is None else min(limit, len(dataset))
        self.transform = transform
        self.prefetch = max(0, int(prefetch))
        self.workers = max(1, int(workers))
        self.should_stop = should_stop
        self._stop = threading.Event()
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, self.prefetch))
        self._thread: threading.Thread | None = None

    def _ranges(self) -> Iterator[range]:
        for start in range(0, self.n, self.batch_size):
            yield range(start, min(start + self.batch_size, self.n))

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="decode") if self.workers > 1 else None
        try:
            for r in self._ranges():
                if self._stop.is_set():
                    return
                if not self._put(("batch", decode_batch(self.dataset, self.prep, r, self.transform, pool))):
                    return
            self._put(("end", None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(("error", exc))
        finally:
            if pool is not None:
                pool.shutdown(wait=True)

    def _cancelled(self) -> bool:
        return self.should_stop is not None and self.should_stop()

    def __iter__(self) -> Iterator[Batch]:
        if self.prefetch == 0:
            for r in self._ranges():
                if self._cancelled():
                    raise Cancelled()
                yield decode_batch(self.dataset, self.prep, r, self.transform)
            return
        self._thread = threading.Thread(target=self._produce, name="decode-ahead", daemon=True)
        self._thread.start()
        try:
            while True:
                if self._cancelled():
                    raise Cancelled()
                try:
                    kind, payload = self._queue.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                if kind == "end":
                    return
                if kind == "error":
                    raise payload
                yield payload
        finally:
            self.close()

    def close(self) -> None:
        """Stop the background thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            while self._thread.is_alive():
                try:  # unblock a producer waiting on a full queue
                    self._queue.get_nowait()
                except queue.Empty:
                    pass
                self._thread.join(timeout=_POLL_S)
            self._thread = None

    def __enter__(self) -> DecodeAhead:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
