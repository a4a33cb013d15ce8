"""The inference service under a bounded load from a second process, against in-process inference.

Starts the service (``engine.serve.server.ServiceServer``) on a free loopback port in this
process and runs the load generator as a separate Python process (so the client's work
does not share this interpreter's GIL): ``--concurrency`` threads post the same sample PNG
to ``POST /v1/classify`` until ``--requests`` requests have been answered. Configurations,
in alternating rounds (median of the rounds' requests/s):

- HTTP, micro-batched: the service's defaults (batch window 2 ms, up to 32 per batch);
- HTTP, one at a time: the same service with ``--max-batch 1``;
- in-process, one at a time: the decoded image through the model, request after request,
  on this thread (the floor HTTP is measured against);
- in-process, batched: the same images ``--concurrency`` at a time (the ceiling).

Prints requests/s, p50/p99 latency and the mean batch size of each, then the ratios
micro-batched / one at a time and HTTP / in-process.

    python bench/serve_load.py [--model default] [--requests 400] [--concurrency 8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.core.paths import SAMPLES_DIR  # noqa: E402

SAMPLE = SAMPLES_DIR / "digit_7.png"


# -- the load generator (the second process) -------------------------------------------------


def run_client(url: str, requests: int, concurrency: int, image: Path, warmup: int) -> dict:
    """Send ``requests`` classify requests from ``concurrency`` threads; latencies are per request."""
    import httpx

    data = image.read_bytes()
    files = {"file": (image.name, data, "image/png")}
    with httpx.Client(base_url=url, timeout=60) as c:
        for _ in range(warmup):
            c.post("/v1/classify", files=files).raise_for_status()
    lock = threading.Lock()
    remaining = [requests]
    latencies: list[float] = []
    batch_sizes: list[int] = []
    errors: list[str] = []
    go = threading.Barrier(concurrency + 1)

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            go.wait()
            while True:
                with lock:
                    if remaining[0] == 0:
                        return
                    remaining[0] -= 1
                t0 = time.perf_counter()
                r = c.post("/v1/classify", files=files)
                dt = (time.perf_counter() - t0) * 1000.0
                with lock:
                    if r.status_code == 200:
                        latencies.append(dt)
                        batch_sizes.append(r.json()["batch_size"])
                    else:
                        errors.append(f"{r.status_code} {r.text[:200]}")

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    go.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "latencies_ms": latencies, "batch_sizes": batch_sizes, "errors": errors[:5]}


# -- the measuring process --------------------------------------------------------------------


def http_round(model: str, max_batch: int, window_ms: float, args) -> dict:
    from engine.serve.config import ServeSettings
    from engine.serve.server import ServiceServer

    server = ServiceServer(
        ServeSettings(model=model, host="127.0.0.1", port=0, max_batch=max_batch, batch_window_ms=window_ms)
    )
    server.start()
    try:
        status = server.wait(120)
        if status.state != "running":
            raise SystemExit(f"the service did not start: {status.message}")
        cmd = [
            sys.executable,
            __file__,
            "--client",
            status.url,
            "--requests",
            str(args.requests),
            "--concurrency",
            str(args.concurrency),
            "--warmup",
            str(args.warmup),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            raise SystemExit(f"the load generator failed:\n{out.stderr}")
        result = json.loads(out.stdout)
    finally:
        server.stop()
    if result["errors"]:
        raise SystemExit(f"requests failed: {result['errors']}")
    return result


def in_process_round(model: str, args) -> tuple[dict, dict]:
    """One at a time and batched through the model on this thread, from the decoded image."""
    from engine.image.bundle import load_bundle
    from engine.image.data.images import load_image

    bundle = load_bundle(model)
    x = bundle.preprocessing(load_image(SAMPLE))[None]
    for _ in range(args.warmup):
        bundle.predict_logits(x)
    lat = []
    t0 = time.perf_counter()
    for _ in range(args.requests):
        t = time.perf_counter()
        bundle.predict_logits(x)
        lat.append((time.perf_counter() - t) * 1000.0)
    single = {"wall_s": time.perf_counter() - t0, "latencies_ms": lat, "batch_sizes": [1] * len(lat)}
    xb = np.repeat(x, args.concurrency, axis=0)
    bundle.predict_logits(xb)
    lat, n = [], 0
    t0 = time.perf_counter()
    while n < args.requests:
        t = time.perf_counter()
        bundle.predict_logits(xb)
        dt = (time.perf_counter() - t) * 1000.0
        lat += [dt] * len(xb)  # every request in the batch waits for the whole batch
        n += len(xb)
    batched = {"wall_s": time.perf_counter() - t0, "latencies_ms": lat, "batch_sizes": [len(xb)] * len(lat)}
    return single, batched


def summarize(results: list[dict]) -> dict:
    rps = [len(r["latencies_ms"]) / r["wall_s"] for r in results]
    lat = np.concatenate([r["latencies_ms"] for r in results])
    sizes = np.concatenate([r["batch_sizes"] for r in results])
    return {
        "rps": statistics.median(rps),
        "p50": float(np.percentile(lat, 50)),
        "p99": float(np.percentile(lat, 99)),
        "batch": float(sizes.mean()),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default", help="a classifier bundle directory or 'default'")
    ap.add_argument("--requests", type=int, default=400, help="requests per configuration and round")
    ap.add_argument("--concurrency", type=int, default=8, help="client threads in the load process")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)  # run as the load generator
    args = ap.parse_args()
    if args.client:
        json.dump(run_client(args.client, args.requests, args.concurrency, SAMPLE, args.warmup), sys.stdout)
        return 0

    names = ["HTTP micro-batched", "HTTP one at a time", "in-process one at a time", "in-process batched"]
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for _ in range(args.rounds):
        runs[names[0]].append(http_round(args.model, 32, 2.0, args))
        runs[names[1]].append(http_round(args.model, 1, 0.0, args))
        single, batched = in_process_round(args.model, args)
        runs[names[2]].append(single)
        runs[names[3]].append(batched)
    s = {n: summarize(r) for n, r in runs.items()}

    print(
        f"model {args.model}, {args.requests} requests x {args.rounds} rounds, "
        f"{args.concurrency} concurrent clients in a second process, sample {SAMPLE.name}"
    )
    print(f"{'configuration':<26} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'mean batch':>11}")
    for n in names:
        r = s[n]
        print(f"{n:<26} {r['rps']:9.1f} {r['p50']:9.2f} {r['p99']:9.2f} {r['batch']:11.2f}")
    mb, one, ip1, ipb = (s[n] for n in names)
    print(
        f"micro-batched / one at a time: {mb['rps'] / one['rps']:.2f}x req/s, "
        f"p50 {mb['p50'] / one['p50']:.2f}x, p99 {mb['p99'] / one['p99']:.2f}x"
    )
    print(f"HTTP micro-batched / in-process one at a time: {mb['rps'] / ip1['rps']:.2f}x req/s")
    print(f"HTTP micro-batched / in-process batched: {mb['rps'] / ipb['rps']:.2f}x req/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
