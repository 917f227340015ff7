"""A large case upload streamed through the gateway: the server's peak memory (issue 18).

Writes a valid case zip of ``--gb`` GB (``--volumes`` float32 volumes, stored uncompressed),
starts ``aooct api`` as a real server process with upload budgets that admit it, signs in a
Tech, streams the zip with ``POST /uploads`` (1 MiB chunks from the file, never in the
client's memory), and reports the server's peak resident memory (``VmHWM`` of the process;
the validating worker is a separate process with its own budget), the wall time and where
the case was queued. Target: under 200 MB for a 2 GB upload.

    python bench/bench_gateway_upload.py --gb 2
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_gateway import gateway_process  # noqa: E402  (bench/, the script's folder)

from api.sessions import hash_password  # noqa: E402
from resources.config import load_config  # noqa: E402
from resources.metadata_db import SqlMetadataDB  # noqa: E402


def _write_case_zip(path: Path, gb: float, n_volumes: int) -> int:
    per = gb * 1024**3 / n_volumes
    n_bscans = max(8, int(per / (4 * 512 * 256)))
    rng = np.random.default_rng(0)
    names = [f"vol_{i:02d}.npy" for i in range(n_volumes)]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name in names:
            with zf.open(f"BIG/{name}", "w", force_zip64=True) as fh:
                header = io_header((n_bscans, 512, 256))
                fh.write(header)
                for _ in range(n_bscans):                     # one B-scan at a time
                    fh.write(rng.random((512, 256), dtype=np.float32).tobytes())
        zf.writestr("BIG/case.json", json.dumps({
            "schema_version": 1, "case_id": "BIG", "subject_id": "S-BENCH", "eye": "OD",
            "location_deg": {"horizontal": 3.0, "vertical": 0.0}, "axial_length_mm": 24.0,
            "scan_field_deg": {"bscan": 1.0, "aline": 1.0}, "depth_um_per_px": 2.0, "volumes": names}))
    return path.stat().st_size


def io_header(shape) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gb", type=float, default=2.0)
    ap.add_argument("--volumes", type=int, default=4)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="aooct-bench-upload-", dir=Path.home()) as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        size = _write_case_zip(tmp / "big.zip", args.gb, args.volumes)
        print(f"case zip: {size / 1024**3:.2f} GiB in {time.perf_counter() - t0:.0f} s")
        home = tmp / "home"
        limits = {"AOOCT_UPLOAD_MAX_TOTAL_MB": str(int(size / 1024**2) + 64),
                  "AOOCT_UPLOAD_MAX_FILE_MB": str(int(size / 1024**2)), "AOOCT_UPLOAD_WORKER_WALL_S": "1200",
                  "AOOCT_UPLOAD_WORKER_CPU_S": "1200"}
        db = SqlMetadataDB(load_config({"AOOCT_HOME": str(home)}).db_url)
        db.create_user("tess", name="Tess", email="t@lab.example", password_hash=hash_password("pw-t-1", rounds=4),
                       role="Tech")
        db.close()
        with gateway_process(home, limits) as (proc, base):
            idle_mb = _hwm_mb(proc.pid)
            tok = httpx.post(base + "/auth/token", json={"username": "tess", "password": "pw-t-1"}).json()
            load0 = os.getloadavg()[0]
            t0 = time.perf_counter()
            with open(tmp / "big.zip", "rb") as fh:
                chunks = iter(lambda: fh.read(1 << 20), b"")
                r = httpx.post(base + "/uploads", params={"name": "big.zip"}, content=chunks,
                               headers={"Authorization": f"Bearer {tok['access_token']}",
                                        "Content-Type": "application/zip", "Content-Length": str(size)},
                               timeout=1800)
            wall = time.perf_counter() - t0
            peak = _hwm_mb(proc.pid)
            print(f"POST /uploads: {r.status_code} in {wall:.0f} s ({size / 1024**2 / wall:.0f} MB/s incl. validation);"
                  f" {r.text[:160]}")
            print(f"gateway peak RSS (VmHWM) {peak:.0f} MB (idle {idle_mb:.0f} MB; target < 200 MB); load average "
                  f"{load0:.2f} at start, {os.getloadavg()[0]:.2f} at end (2 cores)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
