"""What hostile files and requests cost, before and after the gates, side by side in one run.

    python bench/hostile_inputs.py              # about a minute on 2 CPU cores
    python bench/hostile_inputs.py --skip-serve

Every case runs in a fresh interpreter and reports its peak RSS (``VmHWM``, else ``resource.getrusage``)
above that interpreter's baseline after imports, and its wall time:

1. a 16-bit 8000x7999 PNG (about 1 MB on disk, 128 MB decoded): the 8-bit conversion as it was
   (a float64 copy of the scan) against ``engine.image.data.images.load_image`` now (bands of rows);
2. ``predict`` on a bundle whose config.json says input_size [100000, 100000];
3. a .keras zip whose model.weights.h5 inflates to 512 MiB: ``zipfile.read`` as before against
   ``import`` now (refused from the stated size and ratio);
4. three concurrent uploads of that PNG to the service: the default 16 MP cap (refused before
   decoding) and a raised cap (decoded, at most two at a time);
5. a client that leaves 0.5 s into the prefill of a 30,000-token prompt: seconds until the engine
   is free again;
6. Ctrl+C during a generation of the shipped language model: seconds from SIGINT to exit, with
   the prompt exit after a clean stop and without it (interpreter teardown).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.reliability.hostile import PEAK_RSS_CODE  # noqa: E402

_MEASURE = (
    "import time, json\n"
    "rss = peak_rss\n"
    "def report(base, t0, **kw):\n"
    "    print(json.dumps({'extra_rss': rss() - base, 'seconds': time.perf_counter() - t0, **kw}))\n"
)

OLD_16BIT = """
import numpy as np
from PIL import Image
base = rss(); t0 = time.perf_counter()
with Image.open(sys.argv[1]) as img:
    img.load()
    arr = np.asarray(img, dtype=np.float64)          # the conversion as it was before the gate
    lo, hi = float(arr.min()), float(arr.max())
    arr = (arr - lo) / (hi - lo) * 255.0
    out = Image.fromarray(arr.round().astype(np.uint8), mode="L")
report(base, t0, size=list(out.size))
"""
NEW_16BIT = """
from engine.image.data.images import load_image
base = rss(); t0 = time.perf_counter()
out = load_image(sys.argv[1])
report(base, t0, size=list(out.size))
"""
CLI = """
from engine.cli import main
import engine.image.bundle, engine.image.importers.keras_file  # imported before the baseline
base = rss(); t0 = time.perf_counter()
rc = main(sys.argv[1:])
report(base, t0, rc=rc)
"""
OLD_ZIP = """
import zipfile
base = rss(); t0 = time.perf_counter()
with zipfile.ZipFile(sys.argv[1]) as z:
    data = z.read("model.weights.h5")                  # as read_keras_file did before the gate
report(base, t0, bytes=len(data))
"""
SERVE = """
import threading
from fastapi.testclient import TestClient
from engine.serve.app import create_app
from engine.serve.config import ServeSettings
from engine.serve.worker import InferenceWorker
big, small, pixels = sys.argv[1], sys.argv[2], int(sys.argv[3])
worker = InferenceWorker("default"); worker.start().result(timeout=120)
with TestClient(create_app(worker, ServeSettings(max_image_pixels=pixels)), base_url="http://127.0.0.1") as c:
    c.post("/v1/classify", files={"file": ("s.png", open(small, "rb").read())})
    base = rss(); t0 = time.perf_counter()
    data, codes = open(big, "rb").read(), []
    def post():
        codes.append(c.post("/v1/classify", files={"file": ("big.png", data)}).status_code)
    threads = [threading.Thread(target=post) for _ in range(3)]
    [t.start() for t in threads]; [t.join() for t in threads]
    report(base, t0, status=sorted(codes))
worker.stop()
"""


def run(script: str, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen"}
    code = PEAK_RSS_CODE + _MEASURE + script
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600
    )
    last = proc.stdout.strip().splitlines()[-1:] or ["{}"]
    out = json.loads(last[0]) if last[0].startswith("{") else {}
    out["stderr"] = proc.stderr.strip().splitlines()[-1:] if proc.stderr.strip() else []
    return out


def mb(n: float) -> str:
    return f"{n / 2**20:7.0f} MB"


def row(label: str, r: dict, note: str = "") -> None:
    extra = r.get("extra_rss", 0)
    print(f"  {label:<44}{mb(extra)}  {r.get('seconds', 0):6.2f} s  {note}")


def sigint_exit_seconds(fast_exit: bool) -> tuple[float, int]:
    """Serve default-lm, start a long completion, SIGINT: seconds until the process exited, and its code."""
    import socket

    import httpx

    code = (
        "import sys\ntry:\n    import tests.torchvision_ref\nexcept Exception:\n    pass\n"
        f"import engine.cli.serve as c\nc.FAST_EXIT = {fast_exit}\n"
        "from engine.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "serve", "--model", "default-lm", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    line = ""
    while not line.startswith("serving "):
        line = proc.stdout.readline()
        if not line:
            raise SystemExit("the service did not start")
    url = line.split(" at ")[1].split()[0]
    port = int(url.rsplit(":", 1)[1])
    body = json.dumps({"prompt": [5] * 500, "max_tokens": 1500}).encode()
    sock = socket.create_connection(("127.0.0.1", port))
    head = f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
    sock.sendall(head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    while not httpx.get(f"{url}/health").json()["busy"]:
        time.sleep(0.02)
    time.sleep(0.3)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(30)
    sock.close()
    return time.monotonic() - t0, rc


def disconnect_free_seconds(work: Path, prompt_tokens: int = 30000) -> tuple[float, float, dict]:
    """default-lm with its stated context raised, a long non-streaming completion, the client leaves
    0.5 s into the prefill: (seconds it had run, seconds until the engine was free, /health)."""
    import shutil
    import socket

    import httpx

    from engine.core.paths import DEFAULT_LM_DIR
    from engine.serve.config import ServeSettings
    from engine.serve.server import ServiceServer

    folder = work / "long-context-lm"
    shutil.copytree(DEFAULT_LM_DIR, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["max_position_embeddings"] = 65536
    (folder / "config.json").write_text(json.dumps(cfg))
    server = ServiceServer(ServeSettings(model=str(folder), host="127.0.0.1", port=0))
    server.start()
    server.wait(120)
    port = int(server.url.rsplit(":", 1)[1])
    body = json.dumps({"prompt": [5] * prompt_tokens, "max_tokens": 100}).encode()
    sock = socket.create_connection(("127.0.0.1", port))
    head = f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
    sock.sendall(head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    while not httpx.get(f"{server.url}/health").json()["busy"]:
        time.sleep(0.01)
    started = time.monotonic()
    time.sleep(0.5)
    sock.close()
    left = time.monotonic()
    while httpx.get(f"{server.url}/health").json()["busy"]:
        time.sleep(0.01)
    freed = time.monotonic() - left
    health = httpx.get(f"{server.url}/health").json()
    server.stop()
    return left - started, freed, health


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-serve", action="store_true")
    args = ap.parse_args()

    from engine.core.paths import SAMPLES_DIR
    from tests.reliability.hostile import bundle_with_config, png16_large, zip_bomb_keras

    work = Path(tempfile.mkdtemp(prefix="hostile-bench-"))
    sample = str(sorted(SAMPLES_DIR.glob("*.png"))[0])
    png = png16_large(work)
    print(
        f"peak RSS above each interpreter's baseline, and wall time (Python {sys.version.split()[0]}, {os.cpu_count()} CPUs)"
    )

    print(f"1. 16-bit 8000x7999 PNG, {png.stat().st_size / 2**20:.1f} MB on disk, decoded to 8-bit greyscale")
    row("before: float64 conversion of the whole scan", run(OLD_16BIT, str(png)))
    row("now: load_image (header gate, bands of rows)", run(NEW_16BIT, str(png)))

    print("2. predict on a bundle whose config.json says input_size [100000, 100000]")
    bundle = bundle_with_config(work, input_size=[100000, 100000])
    r = run(CLI, "predict", "--model", str(bundle), sample)
    row("now: refused from the config (exit 1)", r, (r["stderr"] or [""])[0][-70:])

    print("3. .keras whose model.weights.h5 inflates from about 0.5 MB to 512 MiB")
    bomb = zip_bomb_keras(work)
    row("before: zipfile.read of the member", run(OLD_ZIP, str(bomb)))
    r = run(CLI, "import", "--weights", str(bomb), "--out", str(work / "out"))
    row("now: import refuses it from the stated size", r, (r["stderr"] or [""])[0][-60:])

    if not args.skip_serve:
        print("4. the service, three concurrent uploads of the 16-bit 8000x7999 PNG")
        r = run(SERVE, str(png), sample, "16777216")
        row("default cap 16 MP: refused before decoding", r, f"HTTP {r.get('status')}")
        r = run(SERVE, str(png), sample, "64000000")
        row("cap raised to 64 MP: decoded, two at a time", r, f"HTTP {r.get('status')}")

        ran, freed, health = disconnect_free_seconds(work)
        print("5. a 30,000-token prompt to default-lm (context raised to 65,536); the client leaves 0.5 s in")
        print(
            f"  engine free {freed:.2f} s after the client left (prefill had run {ran:.2f} s; "
            f"cancelled {health['cancelled']}, completed {health['generations']})"
        )

        print("6. Ctrl+C during a default-lm generation (500-token prompt, max_tokens 1500)")
        for fast in (False, True):
            seconds, rc = sigint_exit_seconds(fast)
            label = "exit right after the clean stop" if fast else "interpreter teardown as well"
            print(f"  {label:<44}{seconds:9.2f} s to exit, code {rc}")


if __name__ == "__main__":
    main()
