"""`text4vis bench --serve`: a real server under load (requests/s, p50/p99 latency, errors, memory)."""
from __future__ import annotations

import asyncio
import collections
import os
import tempfile
import time

from ..errors import UsageError


def _rss_mb(pid: int) -> float:
    """Resident memory of a process and its descendants (the decode workers), in MB (Linux /proc)."""
    def one(p):
        try:
            with open(f"/proc/{p}/status") as f:
                rss = next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0) / 1024
            with open(f"/proc/{p}/task/{p}/children") as f:
                kids = [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            return 0.0
        return rss + sum(one(k) for k in kids)
    return round(one(pid), 1)


async def _clients(url: str, video: str, clients: int, seconds: float) -> dict:
    import httpx
    data = open(video, "rb").read()
    name = os.path.basename(video)
    latencies, errors = [], collections.Counter()
    deadline = time.perf_counter() + seconds

    async def client(http):
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                r = await http.post("/v1/predict", files={"video": (name, data)})
                ok = r.status_code == 200 and "top" in r.json()
                if not ok:
                    errors[str(r.status_code)] += 1
            except httpx.HTTPError as exc:
                ok = False
                errors[type(exc).__name__] += 1
            if ok:
                latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=clients)) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    wall = time.perf_counter() - start
    lat = sorted(latencies) or [float("nan")]
    pick = lambda q: round(1000 * lat[min(len(lat) - 1, int(q * len(lat)))])  # noqa: E731
    return {"requests_per_s": round(len(latencies) / wall, 2), "requests": len(latencies),
            "errors": sum(errors.values()), "p50_ms": pick(0.50), "p99_ms": pick(0.99),
            **({"error_kinds": dict(errors)} if errors else {})}


def bench_serve(serve_args: list[str], video: str, clients=(1, 8), seconds: float = 10.0,
                python: str | None = None) -> dict:
    """Start `text4vis serve SERVE_ARGS` on a free local port, then for each number of concurrent
    clients send uploads of `video` for `seconds`: requests/s, p50/p99 latency, errors, and the
    server's resident memory (with its decode workers) before and after all the requests."""
    import socket
    import subprocess
    import sys

    import httpx
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = tempfile.TemporaryFile()  # the server's log (a pipe nobody reads would fill up and stop it)
    proc = subprocess.Popen([python or sys.executable, "-m", "text4vis", "serve", *serve_args, "--port", str(port),
                             "--max-queue", str(max(64, 2 * max(clients)))],
                            stdout=subprocess.DEVNULL, stderr=log)
    try:
        for _ in range(600):
            if proc.poll() is not None:
                log.seek(0)
                last = log.read().decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise UsageError(f"the server did not start: {last[0]}")
            try:
                health = httpx.get(url + "/healthz", timeout=2).json()
                break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            raise UsageError("the server did not answer /healthz within 5 minutes")
        asyncio.run(_clients(url, video, 1, 1.0))  # warm-up: first batches, caches
        before = _rss_mb(proc.pid)
        cases = {}
        for n in clients:
            cases[f"{n} client{'s' if n > 1 else ''}"] = case = asyncio.run(_clients(url, video, n, seconds))
            case["rss_mb_after"] = round(_rss_mb(proc.pid))
        after = _rss_mb(proc.pid)
        health = httpx.get(url + "/healthz", timeout=120).json()
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    rates = [c["requests_per_s"] for c in cases.values()]
    return {"video": os.path.basename(video), "model": health["model"], "max_batch": health["max_batch"],
            "seconds_per_case": seconds, "mean_batch": health["mean_batch"], "requests": sum(c["requests"] for c in cases.values()),
            "errors": sum(c["errors"] for c in cases.values()), "rss_mb_before": before, "rss_mb_after": after,
            f"speedup_{max(clients)}_vs_{min(clients)}": round(rates[-1] / rates[0], 2) if rates[0] else None,
            "cases": cases}
