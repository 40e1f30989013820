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

    python benchmarks/serve_load.py --hostile --duration 20    # the "hostile mix" (issue #23)

``--hostile``: one server (``--max-batch``'s last value, 8); ``--clients``' first value (8) normal
clients run alone for ``--duration`` seconds, then again beside 2 clients that post a ``--large``
PNG (default 4096x4096, a gradient: ~60 KB on the wire, 200 MB as float pixels; the size rule
refuses it from its header, while 4096x2048 is decoded and resized) with ``resize=true`` in a loop
and 2 slow uploaders that send a request's head and then one byte every half second (cut off by
the server's ``--read-timeout``, 5 s here, then reconnecting). Reported per phase: the normal clients'
images/s and p50/p95, everyone's status counts, the server's peak resident memory (sampled every
0.1 s). Bounded: about 2 x duration + 20 s.
"""
from __future__ import annotations

import argparse
import collections
import io
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


def post(url: str, body: bytes, query: str = "") -> tuple[int, float]:
    """(status, Retry-After seconds or 0) of one upscale request."""
    request = urllib.request.Request(url + "/v1/upscale" + query, data=body, headers={"Content-Type": "image/png"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
            return response.status, 0.0
    except urllib.error.HTTPError as exc:
        exc.read()
        return exc.code, float(exc.headers.get("Retry-After") or 0)


def start_server(max_batch: int, max_queue: int, *flags: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gleansr.cli", "serve", "--port", str(port), "--device", "cpu",
                             "--max-batch", str(max_batch), "--max-queue", str(max_queue), "--log-level", "error",
                             *flags])
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


def big_png(width: int = 4096, height: int = 4096) -> bytes:
    """A width x height RGB gradient as PNG: small on the wire, large once decoded."""
    import numpy as np
    from PIL import Image

    across, down = np.linspace(0, 255, width, dtype=np.float32), np.linspace(0, 255, height, dtype=np.float32)
    rgb = np.stack(np.broadcast_arrays(across[None, :], down[:, None], across[None, :] * 0 + 128), axis=2)
    buf = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def slow_upload(url: str, stop: float, statuses: collections.Counter, lock: threading.Lock) -> None:
    """Send a request's head, then one byte of body every 0.5 s until the server answers or cuts
    the connection; again until ``stop``."""
    host, port = url.removeprefix("http://").split(":")
    while time.monotonic() < stop:
        try:
            with socket.create_connection((host, int(port)), timeout=5) as s:
                s.sendall(b"POST /v1/upscale HTTP/1.1\r\nHost: %s\r\nContent-Type: image/png\r\n"
                          b"Content-Length: 1000000\r\n\r\n" % host.encode())
                s.settimeout(0.5)
                answer = b""
                while time.monotonic() < stop:
                    try:
                        answer = s.recv(64)
                        break
                    except socket.timeout:
                        s.sendall(b"x")
                code = int(answer.split()[1]) if answer.startswith(b"HTTP/") else "closed"
        except OSError:
            code = "closed"
        with lock:
            statuses[f"slow {code}"] += 1


def hostile_mix(args) -> None:
    """Normal clients alone, then beside large uploads and slow uploaders (see the module docstring)."""
    bodies = [f.read_bytes() for f in sorted(SAMPLES.glob("*.png"))]
    width, height = (int(v) for v in args.large.lower().split("x"))
    big = big_png(width, height)
    clients = args.clients[0]
    proc, url = start_server(args.max_batch[-1], args.max_queue, "--read-timeout", str(args.read_timeout))
    print(f"CPU: {cpu_name()}, {os.cpu_count()} logical CPUs; {args.duration:.0f} s per phase, {clients} normal "
          f"clients, --max-batch {args.max_batch[-1]}, --max-queue {args.max_queue}, --read-timeout {args.read_timeout:g}; big upload {len(big):,} bytes "
          f"({width}x{height})")
    print("| phase | normal images/s | p50 ms | p95 ms | normal statuses | hostile statuses | peak RSS (MB) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    try:
        post(url, bodies[0])  # loads the model
        for phase in ("8 normal alone", "8 normal + 2 large + 2 slow"):
            hostile: collections.Counter = collections.Counter()
            lock, stop, peak = threading.Lock(), time.monotonic() + args.duration, [rss_mb(proc.pid)]
            sampler = threading.Thread(target=_sample_rss, args=(proc.pid, stop, peak))
            extra = []
            if "large" in phase:
                extra = [threading.Thread(target=_loop_big, args=(url, big, stop, hostile, lock)) for _ in range(2)]
                extra += [threading.Thread(target=slow_upload, args=(url, stop, hostile, lock)) for _ in range(2)]
            for t in [sampler, *extra]:
                t.start()
            r = drive(url, bodies, clients, args.duration)
            for t in [sampler, *extra]:
                t.join(args.duration + 60)
            normal = ", ".join(f"{k}: {v}" for k, v in sorted(r["statuses"].items()))
            bad = ", ".join(f"{k}: {v}" for k, v in sorted(hostile.items(), key=str)) or "-"
            print(f"| {phase} | {r['rate']:.1f} | {r['p50']:.0f} | {r['p95']:.0f} | {normal} | {bad} | "
                  f"{peak[0]:.0f} |", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _loop_big(url: str, big: bytes, stop: float, statuses: collections.Counter, lock: threading.Lock) -> None:
    while time.monotonic() < stop:
        status, retry = post(url, big, "?resize=true")
        with lock:
            statuses[f"large {status}"] += 1
        if retry:
            time.sleep(retry)


def _sample_rss(pid: int, stop: float, peak: list[float]) -> None:
    while time.monotonic() < stop:
        peak[0] = max(peak[0], rss_mb(pid))
        time.sleep(0.1)


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
    p.add_argument("--hostile", action="store_true", help="the hostile mix: normal clients alone, then beside "
                                                          "2 large uploaders and 2 slow uploaders")
    p.add_argument("--read-timeout", type=float, default=5.0, help="the server's --read-timeout in the hostile mix")
    p.add_argument("--large", default="4096x4096", help="the large uploads' WxH in the hostile mix (4096x4096: "
                                                        "refused from its header; 4096x2048: decoded and resized)")
    args = p.parse_args()
    if args.hostile:
        hostile_mix(args)
        return
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
