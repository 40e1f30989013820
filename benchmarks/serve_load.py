"""Load on `gleansr serve`: throughput and latency with and without batching, memory before/after.

    python benchmarks/serve_load.py                      # 8 and 32 clients, --max-batch 1 and 8
    python benchmarks/serve_load.py --duration 20 --clients 8 --max-batch 1 4 8

For each ``--max-batch`` a fresh server is started on a free 127.0.0.1 port with the bundled glyph
model (16 -> 128); after one warm-up request, each client count runs for ``--duration`` seconds:
every client posts a sample glyph, waits for the answer, and posts again (after Retry-After on a
503). Reported: successful images/s, p50/p95 latency of the successes, the count of each status,
the server's resident memory before and after, and the in-process ``Upscaler.upscale_batch``
rate at the same batch size in this process (the ceiling the server's overhead is measured against).
Bounded: about (duration x client counts + 15 s) per batch setting.
"""
from __future__ import annotations

import argparse
import collections
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "gleansr" / "assets" / "samples" / "lr"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def post(url: str, body: bytes) -> tuple[int, float]:
    """(status, Retry-After seconds or 0) of one upscale request."""
    request = urllib.request.Request(url + "/v1/upscale", data=body, headers={"Content-Type": "image/png"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
            return response.status, 0.0
    except urllib.error.HTTPError as exc:
        exc.read()
        return exc.code, float(exc.headers.get("Retry-After") or 0)


def start_server(max_batch: int, max_queue: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gleansr.cli", "serve", "--port", str(port), "--device", "cpu",
                             "--max-batch", str(max_batch), "--max-queue", str(max_queue), "--log-level", "error"])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/healthz", timeout=2)
            return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("the server did not start within 120 s")


def drive(url: str, bodies: list[bytes], clients: int, duration: float) -> dict:
    """``clients`` closed-loop clients for ``duration`` seconds; statuses and latencies."""
    statuses: collections.Counter = collections.Counter()
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + duration

    def client(i: int) -> None:
        while time.monotonic() < stop:
            t = time.perf_counter()
            status, retry = post(url, bodies[i % len(bodies)])
            with lock:
                statuses[status] += 1
                if status == 200:
                    latencies.append(time.perf_counter() - t)
            if retry:
                time.sleep(retry)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    q = statistics.quantiles(latencies, n=20) if len(latencies) >= 2 else [float("nan")] * 19
    return {"rate": len(latencies) / elapsed, "p50": q[9] * 1000, "p95": q[18] * 1000, "statuses": dict(statuses)}


def in_process_rate(batch: int, seconds: float = 5.0) -> float:
    """Images/s of Upscaler.upscale_batch on the glyph samples, ``batch`` images per call."""
    import numpy as np
    from PIL import Image

    from gleansr.pipeline.upscaler import Upscaler

    up = Upscaler("glean_glyphs_8x", device="cpu")
    images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(SAMPLES.glob("*.png"))]
    images = (images * batch)[:batch]
    up.upscale_batch(images, batch_size=batch)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        up.upscale_batch(images, batch_size=batch)
        done += batch
    return done / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, nargs="+", default=[8, 32])
    p.add_argument("--max-batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--max-queue", type=int, default=16)
    p.add_argument("--duration", type=float, default=10.0)
    args = p.parse_args()
    bodies = [f.read_bytes() for f in sorted(SAMPLES.glob("*.png"))]
    print(f"CPU: {cpu_name()}, {os.cpu_count()} logical CPUs; {args.duration:.0f} s per row, --max-queue {args.max_queue}")
    print("| max batch | clients | images/s | p50 ms | p95 ms | statuses | RSS before -> after (MB) | in-process images/s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for max_batch in args.max_batch:
        proc, url = start_server(max_batch, args.max_queue)
        try:
            post(url, bodies[0])  # loads the model
            for clients in args.clients:
                before = rss_mb(proc.pid)
                r = drive(url, bodies, clients, args.duration)
                after = rss_mb(proc.pid)
                codes = ", ".join(f"{k}: {v}" for k, v in sorted(r["statuses"].items()))
                print(f"| {max_batch} | {clients} | {r['rate']:.1f} | {r['p50']:.0f} | {r['p95']:.0f} | {codes} | "
                      f"{before:.0f} -> {after:.0f} | {in_process_rate(max_batch):.1f} |", flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


if __name__ == "__main__":
    main()
