"""Run records and their SQLite store.

Every evaluation, benchmark and quantization is one row in ``runs`` with its
metrics (long form: metric, class, value) and, for benchmarks, per-iteration
samples. Each record is written in one transaction in WAL mode, so a process
killed mid-sweep leaves every finished row intact and no partial one.
Connections are opened per call, so the GUI thread and the engine thread never
share one.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from engine.core import paths
from engine.core.fileio import write_csv
from engine.core.metrics import as_written

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    kind TEXT NOT NULL,
    model_name TEXT NOT NULL,
    model_path TEXT,
    model_hash TEXT,
    recipe TEXT,
    dataset TEXT,
    status TEXT NOT NULL DEFAULT 'ok',
    settings_json TEXT NOT NULL DEFAULT '{}',
    environment_json TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    metric TEXT NOT NULL,
    class TEXT NOT NULL DEFAULT '',
    value REAL
);
CREATE INDEX IF NOT EXISTS metrics_run ON metrics(run_id);
CREATE TABLE IF NOT EXISTS samples (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    iteration INTEGER NOT NULL,
    latency_ms REAL NOT NULL,
    active_memory INTEGER,
    rss INTEGER
);
CREATE INDEX IF NOT EXISTS samples_run ON samples(run_id);
"""


@dataclass(frozen=True)
class RunRecord:
    """One stored run. ``metrics`` holds overall values; ``per_class`` (metric, class, value)."""

    kind: str
    model_name: str
    metrics: dict[str, float]
    model_path: str | None = None
    model_hash: str | None = None
    recipe: str | None = None
    dataset: str | None = None
    status: str = "ok"
    settings: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    per_class: tuple[tuple[str, str, float], ...] = ()
    samples: tuple[tuple[int, float, int, int], ...] = ()
    id: int | None = None
    created: str = ""

    @property
    def variant(self) -> str:
        return f"{self.model_name} [{self.recipe}]" if self.recipe else self.model_name


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).astimezone().isoformat(timespec="seconds")


def _clean(v: float | None) -> float | None:
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) else v


class ResultsStore:
    """The results database; safe to use from any thread (one connection per call)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else paths.results_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._listeners: list[Callable[[], None]] = []
        with self._connect() as con:
            con.executescript(SCHEMA)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=30)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute("PRAGMA foreign_keys=ON")
            with con:  # one transaction: commit on success, roll back on error
                yield con
        finally:
            con.close()

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after every write (add or delete), on the writing thread."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener()

    def add(self, record: RunRecord) -> RunRecord:
        """Store a record atomically; returns it with its id and timestamp."""
        created = record.created or _now()
        with self._connect() as con:
            cur = con.execute(
                "INSERT INTO runs (created, kind, model_name, model_path, model_hash, recipe, dataset, status,"
                " settings_json, environment_json) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    created,
                    record.kind,
                    record.model_name,
                    record.model_path,
                    record.model_hash,
                    record.recipe,
                    record.dataset,
                    record.status,
                    json.dumps(record.settings, default=str),
                    json.dumps(record.environment, default=str),
                ),
            )
            run_id = cur.lastrowid
            rows = [(run_id, k, "", _clean(v)) for k, v in record.metrics.items()]
            rows += [(run_id, m, c, _clean(v)) for m, c, v in record.per_class]
            con.executemany("INSERT INTO metrics (run_id, metric, class, value) VALUES (?,?,?,?)", rows)
            con.executemany(
                "INSERT INTO samples (run_id, iteration, latency_ms, active_memory, rss) VALUES (?,?,?,?,?)",
                [(run_id, *s) for s in record.samples],
            )
        self._changed()
        return replace(record, id=run_id, created=created)

    def _record(self, con: sqlite3.Connection, row: tuple, full: bool) -> RunRecord:
        (run_id, created, kind, name, mpath, mhash, recipe, dataset, status, settings, env) = row
        metrics, per_class = {}, []
        for metric, cls, value in con.execute(
            "SELECT metric, class, value FROM metrics WHERE run_id=? ORDER BY rowid", (run_id,)
        ):
            value = math.nan if value is None else value
            if cls == "":
                metrics[metric] = value
            elif full:
                per_class.append((metric, cls, value))
        samples = ()
        if full:
            samples = tuple(
                con.execute(
                    "SELECT iteration, latency_ms, active_memory, rss FROM samples WHERE run_id=? ORDER BY iteration",
                    (run_id,),
                )
            )
        return RunRecord(
            kind=kind,
            model_name=name,
            metrics=metrics,
            model_path=mpath,
            model_hash=mhash,
            recipe=recipe,
            dataset=dataset,
            status=status,
            settings=json.loads(settings),
            environment=json.loads(env),
            per_class=tuple(per_class),
            samples=samples,
            id=run_id,
            created=created,
        )

    _COLUMNS = "id, created, kind, model_name, model_path, model_hash, recipe, dataset, status, settings_json, environment_json"

    def list(self, full: bool = False) -> list[RunRecord]:
        """All runs, oldest first."""
        with self._connect() as con:
            rows = con.execute(f"SELECT {self._COLUMNS} FROM runs ORDER BY id").fetchall()
            return [self._record(con, r, full) for r in rows]

    def get(self, run_id: int) -> RunRecord | None:
        with self._connect() as con:
            row = con.execute(f"SELECT {self._COLUMNS} FROM runs WHERE id=?", (run_id,)).fetchone()
            return self._record(con, row, True) if row else None

    def delete(self, run_ids: Iterable[int]) -> None:
        with self._connect() as con:
            con.executemany("DELETE FROM runs WHERE id=?", [(int(i),) for i in run_ids])
        self._changed()

    def count(self) -> int:
        with self._connect() as con:
            return con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]


SUMMARY_FIELDS = ["id", "created", "kind", "model_name", "recipe", "dataset", "status", "model_hash", "model_path"]
# What every run records about where it ran (engine.measure.environment), as the summary's last columns.
ENVIRONMENT_FIELDS = ["device", "mlx_version", "app_version", "machine", "platform", "cpu", "python"]


def export_summary_csv(records: list[RunRecord], path: str | Path) -> Path:
    """One row per run: identifying fields, every overall metric seen, then where it ran (raw values)."""
    metric_names: list[str] = []
    for r in records:
        for k in r.metrics:
            if k not in metric_names:
                metric_names.append(k)
    rows = (
        [getattr(r, f) for f in SUMMARY_FIELDS]
        + [as_written(m, r.metrics.get(m)) for m in metric_names]
        + [(r.environment or {}).get(k) for k in ENVIRONMENT_FIELDS]
        for r in records
    )
    return write_csv(path, SUMMARY_FIELDS + metric_names + ENVIRONMENT_FIELDS, rows)


def export_long_csv(records: list[RunRecord], path: str | Path) -> Path:
    """The ``variant,metric,class,value`` long form (plus run id), overall and per class."""
    rows = []
    for r in records:
        rows += [(r.id, r.variant, k, "", as_written(k, v)) for k, v in r.metrics.items()]
        rows += [(r.id, r.variant, m, c, as_written(m, v)) for m, c, v in r.per_class]
    return write_csv(path, ["run_id", "variant", "metric", "class", "value"], rows)


def export_samples_csv(records: list[RunRecord], path: str | Path) -> Path:
    rows = [(r.id, r.variant, *s) for r in records for s in r.samples]
    return write_csv(path, ["run_id", "variant", "iteration", "latency_ms", "active_memory", "rss"], rows)
