"""Stratified, seeded train/val/test splits, optionally grouped (no group crosses a split).

Grouping matters for medical sets: HAM10000 holds several images of one lesion, and a
lesion seen in training must not be scored in the test split.
"""

from __future__ import annotations

import numpy as np

from engine.core.errors import UserError

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)


def check_fractions(fractions: tuple[float, float, float]) -> tuple[float, float, float]:
    """Validate (train, val, test) fractions: three non-negative numbers summing to 1."""
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or any(f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise UserError(f"split fractions must be three non-negative numbers summing to 1, not {fractions}")
    return fr  # type: ignore[return-value]


def _allocate(n: int, fractions: tuple[float, ...]) -> list[int]:
    """Split n items into len(fractions) counts by largest remainder (counts sum to n)."""
    exact = [n * f for f in fractions]
    counts = [int(np.floor(e)) for e in exact]
    order = sorted(range(len(fractions)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    # A rare class still reaches every split that has a share, when it has enough items.
    wanted = [i for i, f in enumerate(fractions) if f > 0]
    if n >= len(wanted):
        for i in wanted:
            if counts[i] == 0:
                counts[max(range(len(counts)), key=lambda j: counts[j])] -= 1
                counts[i] += 1
    return counts


def stratified_split(
    labels: np.ndarray,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Assign every item to train, val or test, class by class.

    Args:
        labels: (N,) integer class of each item.
        fractions: (train, val, test) shares.
        seed: the shuffle seed; the same seed gives the same split.
        groups: optional (N,) group id per item (e.g. lesion id). Whole groups are
            assigned, stratified by each group's most frequent label, so a group never
            crosses splits.

    Returns:
        {"train": idx, "val": idx, "test": idx}, sorted index arrays that partition range(N).
    """
    fractions = check_fractions(fractions)
    labels = np.asarray(labels).reshape(-1)
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    if groups is None:
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            members = members[rng.permutation(len(members))]
            start = 0
            for name, count in zip(SPLITS, _allocate(len(members), fractions), strict=True):
                out[name].append(members[start : start + count])
                start += count
    else:
        groups = np.asarray(groups).reshape(-1)
        if groups.shape != labels.shape:
            raise UserError(f"{groups.shape[0]} group ids for {labels.shape[0]} items")
        uniq, inverse = np.unique(groups, return_inverse=True)
        # A group's stratum is its most frequent label (ties: the smallest label).
        counts = np.zeros((len(uniq), int(labels.max()) + 1), dtype=np.int64)
        np.add.at(counts, (inverse, labels), 1)
        stratum = counts.argmax(axis=1)
        for c in np.unique(stratum):
            gids = np.flatnonzero(stratum == c)
            gids = gids[rng.permutation(len(gids))]
            start = 0
            for name, count in zip(SPLITS, _allocate(len(gids), fractions), strict=True):
                chosen = gids[start : start + count]
                out[name].append(np.flatnonzero(np.isin(inverse, chosen)))
                start += count
    return {name: np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64) for name, parts in out.items()}
