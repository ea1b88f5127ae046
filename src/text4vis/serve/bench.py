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


def _start(serve_args: list[str], python: str | None, extra: list[str]):
    """`text4vis serve SERVE_ARGS EXTRA` on a free local port, answering /healthz: (process, url, log)."""
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
                             *extra], stdout=subprocess.DEVNULL, stderr=log)
    for _ in range(600):
        if proc.poll() is not None:
            log.seek(0)
            last = log.read().decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise UsageError(f"the server did not start: {last[0]}")
        try:
            httpx.get(url + "/healthz", timeout=2)
            return proc, url, log
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise UsageError("the server did not answer /healthz within 5 minutes")


def _stop(proc, log) -> None:
    import subprocess
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def bench_flood(serve_args: list[str], video: str, long_video: str, predicts: int = 3, slow: int = 4,
                timelines: int = 2, timeline_fields: dict | None = None, python: str | None = None) -> dict:
    """Issue 21's flood: the latency of a 1-clip predict on an idle server, then while `slow` clients
    trickle uploads (a byte every 0.5 s) and `timelines` long timelines of `long_video` are in flight.
    Seconds per predict, the timelines' outcome, and the load average before and after."""
    import socket
    import threading

    import httpx
    fields = timeline_fields or {"window": "2", "stride": "1"}
    proc, url, log = _start(serve_args, python, ["--max-queue", "8"])
    data, name = open(video, "rb").read(), os.path.basename(video)
    port = int(url.rsplit(":", 1)[1])

    def predict() -> float:
        t0 = time.perf_counter()
        r = httpx.post(url + "/v1/predict", files={"video": (name, data)}, timeout=600)
        if r.status_code != 200:
            raise UsageError(f"predict answered {r.status_code}: {r.text[:200]}")
        return round(time.perf_counter() - t0, 2)

    load_before = os.getloadavg()
    stop = threading.Event()
    socks, threads, outcome = [], [], {}
    try:
        predict()  # warm-up
        idle = [predict() for _ in range(predicts)]
        body = b"--b0und\r\nContent-Disposition: form-data; name=\"video\"; filename=\"slow.mp4\"\r\n\r\n" + data
        head = (f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b0und\r\n"
                f"Content-Length: {len(body) + 12}\r\n\r\n").encode()
        for _ in range(slow):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(head + body[:100])
            socks.append(s)

        def trickle(s, start=100):
            for k in range(start, len(body)):
                if stop.wait(0.5):
                    return
                try:
                    s.sendall(body[k:k + 1])
                except OSError:
                    return

        def timeline(i):
            t0 = time.perf_counter()
            try:
                r = httpx.post(url + "/v1/timeline", files={"video": (f"long{i}.mp4", open(long_video, "rb").read())},
                               data=fields, timeout=900)
                outcome[f"timeline{i}"] = {"status": r.status_code, "seconds": round(time.perf_counter() - t0, 1),
                                           "windows": len(r.json().get("windows", [])) if r.status_code == 200 else 0}
            except httpx.HTTPError as exc:
                outcome[f"timeline{i}"] = {"error": type(exc).__name__}

        threads = [threading.Thread(target=trickle, args=(s,), daemon=True) for s in socks]
        threads += [threading.Thread(target=timeline, args=(i,), daemon=True) for i in range(timelines)]
        for t in threads:
            t.start()
        for _ in range(1200):  # until both timelines are at the model (decoded), at most 10 minutes
            h = httpx.get(url + "/healthz", timeout=60).json()
            if h.get("model_jobs", 0) >= timelines or any(k.startswith("timeline") for k in outcome):
                break
            if "model_jobs" not in h and h["in_flight"] >= slow + timelines:  # a server before issue 21
                time.sleep(10)  # (it does not say when the timelines reach the model)
                break
            time.sleep(0.5)
        flood_health = {k: h.get(k) for k in ("in_flight", "uploading", "model_jobs", "clips_pending")}
        flooded = [predict() for _ in range(predicts)]
        still = timelines - len(outcome)
        for t in threads[slow:]:
            t.join(900)
    finally:
        stop.set()
        for s in socks:
            s.close()
        _stop(proc, log)
    return {"video": name, "long_video": os.path.basename(long_video), "timeline_fields": fields,
            "slow_clients": slow, "timelines": timelines, "idle_predict_s": idle, "flood_predict_s": flooded,
            "timelines_running_after_predicts": still, "at_flood": flood_health, **outcome,
            "load_before": [round(x, 1) for x in load_before], "load_after": [round(x, 1) for x in os.getloadavg()]}
