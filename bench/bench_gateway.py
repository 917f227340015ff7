"""Gateway latency under concurrent clients, and whether the rate limit holds (issue 18).

Starts ``aooct api`` as a real server process on a loopback port over a fresh SQLite metadata
DB holding ``--cases`` cases with 12 metrics each, signs in one user per client, and has
``--clients`` threads (one keep-alive HTTP connection each) call ``GET /cases?limit=50`` and
``GET /cases/{id}/metrics`` and a 512×512 PNG tile of a 1024×1024 en face slab
(``GET /cases/{id}/slabs/isos_cost?size=512``) ``--requests`` times each. Prints p50 / p99 per route, requests per
second and the machine's load. Then, with ``AOOCT_API_RATE_PER_MIN`` = 100, one caller sends
300 requests as fast as it can: at most 100 may pass.

    python bench/bench_gateway.py --clients 50 --requests 20
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.sessions import hash_password  # noqa: E402
from resources.config import load_config  # noqa: E402
from resources.metadata_db import SqlMetadataDB  # noqa: E402
from resources.object_store import make_object_store  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def gateway_process(home: Path, extra_env: dict):
    """``aooct api`` on a free loopback port over ``home``, up and answering: yields
    (process, base URL); the process is stopped on leaving, also when it failed to start."""
    own = ("AOOCT_OIDC_", "AOOCT_API_", "AOOCT_DB_URL", "AOOCT_DROP", "AOOCT_OBJECT_STORE", "AOOCT_EXPORT")
    env = {k: v for k, v in os.environ.items() if not k.startswith(own)}
    env.update(AOOCT_HOME=str(home), **extra_env)
    port = _free_port()
    proc = subprocess.Popen([str(Path(sys.executable).with_name("aooct")), "api", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("aooct api did not start")
            time.sleep(0.2)
        yield proc, base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _populate(home: Path, n_cases: int, n_users: int) -> None:
    cfg = load_config({"AOOCT_HOME": str(home)})
    db = SqlMetadataDB(cfg.db_url)
    store = make_object_store(cfg.object_store, **cfg.store_options())
    rng = np.random.default_rng(0)
    for i in range(10):
        buf = io.BytesIO()
        np.save(buf, rng.random((1024, 1024), dtype=np.float32))
        store.put_bytes(f"cases/CASE-{i:05d}/enface/isos_cost.npy", buf.getvalue())
    pw = hash_password("bench-pw-1", rounds=4)
    for i in range(n_users):
        db.create_user(f"user{i}", name=f"User {i}", email=f"user{i}@lab.example", password_hash=pw,
                       role="Researcher")
    for i in range(n_cases):
        cid = f"CASE-{i:05d}"
        db.upsert_case(case_id=cid, status="processed", subject_id=f"SUBJ-{i % 97:04x}", eye="OD" if i % 2 else "OS")
        db.record_metrics(cid, [{"structure": "cones", "metric": f"m{k}", "value": float(k), "unit": "1"}
                                for k in range(12)])
    db.close()


def _token(base: str, user: str) -> str:
    r = httpx.post(base + "/auth/token", json={"username": user, "password": "bench-pw-1"}, timeout=10)
    r.raise_for_status()
    return r.json()["access_token"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--requests", type=int, default=20, help="per client and route")
    ap.add_argument("--cases", type=int, default=500)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="aooct-bench-gw-") as tmp:
        home = Path(tmp) / "home"
        _populate(home, args.cases, args.clients)
        unlimited = {"AOOCT_API_RATE_PER_MIN": "100000", "AOOCT_API_RATE_IP_PER_MIN": "100000"}
        with gateway_process(home, unlimited) as (_, base):
            tokens = [_token(base, f"user{i}") for i in range(args.clients)]
            times = {"GET /cases?limit=50": [], "GET /cases/{id}/metrics": [], "GET slab tile 512x512 PNG": []}
            errors = []
            lock = threading.Lock()
            start = threading.Barrier(args.clients)

            def client(i):
                with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {tokens[i]}"}, timeout=60) as c:
                    start.wait()
                    for k in range(args.requests):
                        routes = (("GET /cases?limit=50", f"/cases?limit=50&offset={(k * 50) % args.cases}"),
                                  ("GET /cases/{id}/metrics", f"/cases/CASE-{(i * 7 + k) % args.cases:05d}/metrics"),
                                  ("GET slab tile 512x512 PNG",
                                   f"/cases/CASE-{(i + k) % 10:05d}/slabs/isos_cost?size=512&row={256 * (k % 3)}"))
                        for route, path in routes:
                            t0 = time.perf_counter()
                            r = c.get(path)
                            dt = time.perf_counter() - t0
                            with lock:
                                times[route].append(dt)
                                if r.status_code != 200:
                                    errors.append(r.status_code)

            load0 = os.getloadavg()[0]
            t0 = time.perf_counter()
            threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
            n = sum(len(v) for v in times.values())
            print(f"{args.clients} clients x {args.requests} requests x {len(times)} routes, {args.cases} cases; "
                  f"{n / wall:.0f} requests/s over {wall:.1f} s; non-200: {len(errors)}; "
                  f"load average {load0:.2f} at start, {os.getloadavg()[0]:.2f} at end (2 cores, client and "
                  "server on the same machine)")
            for route, v in times.items():
                q = statistics.quantiles(v, n=100)
                print(f"  {route}: p50 {1000 * statistics.median(v):.1f} ms, p99 {1000 * q[98]:.1f} ms")
        limited = {"AOOCT_API_RATE_PER_MIN": "100", "AOOCT_API_RATE_IP_PER_MIN": "100000"}
        with gateway_process(home, limited) as (_, base):
            token = _token(base, "user0")
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
                codes = [c.get("/me").status_code for _ in range(300)]
            print(f"rate limit 100/min per caller, 300 requests at once: {codes.count(200)} passed, "
                  f"{codes.count(429)} refused with 429 (target: at most 100 pass)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
