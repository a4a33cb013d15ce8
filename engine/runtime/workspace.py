"""The engine thread's state: one bounded cache of loaded models of every kind, and the results store."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

from engine import kinds
from engine.core.errors import UserError
from engine.measure.results import ResultsStore

#: Models kept loaded at once: side-by-side views need two, a float parent and its variant a third.
MAX_LOADED = 3
#: Decoded pixels kept for reuse (a drop of many files, then Grad-CAM of any of them), in bytes.
MAX_IMAGE_BYTES = 256 * 2**20


class Workspace:
    """Loaded models (any kind, least recently used evicted beyond :data:`MAX_LOADED`) and the store.

    A model whose files changed on disk is reloaded. ``loads`` counts real loads per key, so
    tests (and curious users) can see that a job loads each model once.
    """

    def __init__(self, store: ResultsStore | None = None, max_loaded: int = MAX_LOADED):
        self._store = store
        self._models: OrderedDict[tuple[str, str], tuple[float, Any]] = OrderedDict()
        self.max_loaded = max_loaded
        self.loads: dict[str, int] = {}
        self._images: OrderedDict[tuple[str, float, int], Any] = OrderedDict()
        self.decodes: dict[str, int] = {}

    @property
    def store(self) -> ResultsStore:
        if self._store is None:
            self._store = ResultsStore()
        return self._store

    def model(self, spec: str | Path, progress=None, kind: str | None = None) -> Any:
        """Load (or reuse) the model ``spec`` names, whatever its kind."""
        adapter = kinds.get(kind) if kind else kinds.of(spec)
        key = adapter.resolve(spec)
        stamp = adapter.stamp(key)
        hit = self._models.pop((adapter.name, key), None)
        if hit is not None and hit[0] == stamp:
            self._models[(adapter.name, key)] = hit  # most recently used last
            return hit[1]
        model = adapter.load(key, progress)
        self.loads[key] = self.loads.get(key, 0) + 1
        self._models[(adapter.name, key)] = (adapter.stamp(key), model)
        while len(self._models) > self.max_loaded:
            self._models.popitem(last=False)
        return model

    def image(self, path: str | Path):
        """A decoded image file (PIL, 'L' or 'RGB'), decoded once while it is among the last
        :data:`MAX_IMAGE_BYTES` used: prediction, Grad-CAM and thumbnails of one drop share it."""
        from engine.image.data.images import load_image

        p = Path(path).expanduser().resolve()
        try:
            st = p.stat()
            key = (str(p), st.st_mtime, st.st_size)
        except OSError:
            return load_image(p)  # missing or unreadable: load_image says so in one line
        hit = self._images.pop(key, None)
        if hit is None:
            hit = load_image(p)
            self.decodes[str(p)] = self.decodes.get(str(p), 0) + 1
        self._images[key] = hit
        size = lambda im: im.width * im.height * len(im.getbands())  # noqa: E731
        while len(self._images) > 1 and sum(size(im) for im in self._images.values()) > MAX_IMAGE_BYTES:
            self._images.popitem(last=False)
        return hit

    def bundle(self, spec: str | Path):
        """An image-classifier bundle (raises UserError naming the kind it is otherwise)."""
        return self._of_kind(spec, kinds.IMAGE)

    def language_model(self, spec: str | Path, progress=None):
        """A language model (raises UserError naming the kind it is otherwise)."""
        return self._of_kind(spec, kinds.LANGUAGE, progress)

    def _of_kind(self, spec, kind: str, progress=None):
        found = kinds.kind_of(spec)
        if found != kind:
            raise UserError(f"is a {kinds.get(found).label}, not a {kinds.get(kind).label}", spec)
        return self.model(spec, progress, kind)

    def forget(self, spec: str | Path | None = None) -> None:
        """Drop loaded models (all when spec is None) and return their memory."""
        if spec is None:
            self._models.clear()
        else:
            for kind in kinds.KINDS:
                key = kinds.get(kind).resolve(spec)
                self._models.pop((kind, key), None)
        from engine.measure.memory import release_memory

        release_memory()
