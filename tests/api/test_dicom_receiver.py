"""The DICOM receiver against real DICOM peers: dcmtk's echoscu/storescu and pynetdicom's SCU.

Association checks (calling AE *and* address, called AE), the negotiated classes, refusals
with a status and a reason (burned-in annotation, oversize), a case per idle series,
quarantine when the DICOM lacks what a case needs, and staged series surviving a restart.
The whole path to a processed case with no planted identifier left is in
``tests/e2e/test_phi.py``.
"""
from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from api.dicom_cases import SeriesAssembler  # noqa: E402
from api.dicom_scp import ReceiverConfig, serve  # noqa: E402
from phi_planted import PLANTED, free_port as _port, write_opt  # noqa: E402
from resources.object_store import LocalObjectStore  # noqa: E402

KEY = bytes(range(32))
DCMTK = pytest.mark.skipif(shutil.which("storescu") is None,
                           reason="dcmtk is not installed (apt-get install dcmtk)")


@pytest.fixture
def receiver(tmp_path):
    """A receiver on a free port that allows SCANNER@127.0.0.1; yields (cfg, assembler, drop, files)."""
    drop = LocalObjectStore(tmp_path / "drop")
    mapped = {}
    files = []
    rng = np.random.default_rng(0)
    for i in range(2):
        files.append(tmp_path / f"in_{i}.dcm")
        write_opt(files[-1], rng.gamma(1.0, 1.0, (4, 64, 16)).astype(np.float32) + 0.1, i)

    def start(**kw):
        defaults = kw.pop("defaults", {"location_deg": {"horizontal": 2.0, "vertical": 0.0},
                                       "axial_length_mm": 24.0})
        cfg = ReceiverConfig(port=_port(), peers=(("SCANNER", "127.0.0.1"),), idle_s=kw.pop("idle_s", 3600.0))
        assembler = SeriesAssembler(tmp_path / "staging", drop, uid_key=KEY, idle_s=cfg.idle_s,
                                    map_subject=lambda s, p: mapped.setdefault(s, p), defaults=defaults,
                                    max_instance_bytes=kw.pop("max_instance_bytes", 1 << 30))
        server, stop = serve(cfg, assembler, block=False, stale_s=kw.pop("stale_s", 120.0))
        started.append((server, stop))
        return cfg, assembler

    started: list = []
    yield start, drop, files, mapped
    for server, stop in started:
        stop.set()
        server.shutdown()


def _scu_store(cfg, path: Path, *, calling: str = "SCANNER"):
    """Send one file with pynetdicom's SCU; return the C-STORE response status dataset."""
    import pydicom
    from pynetdicom import AE

    ds = pydicom.dcmread(path)
    ae = AE(ae_title=calling)
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", cfg.port, ae_title=cfg.ae_title)
    assert assoc.is_established
    try:
        return assoc.send_c_store(ds)
    finally:
        assoc.release()


@DCMTK
def test_echo_and_store_from_an_allowed_peer_and_refusal_of_others(receiver, caplog):
    start, drop, files, mapped = receiver
    caplog.set_level(logging.INFO, logger="aooct.dicom")
    cfg, assembler = start()
    port = str(cfg.port)
    ok = subprocess.run(["echoscu", "-aet", "SCANNER", "-aec", "AOOCT", "127.0.0.1", port],
                        capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    for args in (["-aet", "EVIL", "-aec", "AOOCT"], ["-aet", "SCANNER", "-aec", "OTHER"]):
        refused = subprocess.run(["echoscu", *args, "127.0.0.1", port], capture_output=True, text=True,
                                 timeout=30)
        assert refused.returncode != 0 and "Rejected" in refused.stdout + refused.stderr
    assert "refused association from AE 'EVIL'" in caplog.text
    bad = subprocess.run(["storescu", "-aet", "EVIL", "-aec", "AOOCT", "127.0.0.1", port, str(files[0])],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0
    assert not list((Path(assembler.staging)).iterdir()), "a refused peer staged something"
    sent = subprocess.run(["storescu", "-aet", "SCANNER", "-aec", "AOOCT", "127.0.0.1", port,
                           *map(str, files)], capture_output=True, text=True, timeout=60)
    assert sent.returncode == 0, sent.stderr
    (written,) = assembler.flush(force=True)
    spec = json.loads(drop.get_bytes(f"{written}/case.json"))
    assert written == spec["case_id"] and spec["case_id"].startswith("DCM-")
    assert spec["volumes"] == ["vol_00.dcm", "vol_01.dcm"] and spec["eye"] == "OD"
    assert spec["subject_id"] == mapped[PLANTED["PatientID"]] and spec["subject_id"].startswith("P-")
    stored = drop.get_bytes(f"{written}/vol_00.dcm")
    assert not [v for v in PLANTED.values() if v.encode() in stored]


def test_a_non_ophthalmic_class_and_a_compressed_syntax_are_not_negotiated(receiver):
    from pynetdicom import AE

    start, *_ = receiver
    cfg, _ = start()
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.7")  # Secondary Capture
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.77.1.5.4", "1.2.840.10008.1.2.4.50")  # OPT, JPEG
    ae.add_requested_context("1.2.840.10008.1.1")  # Verification
    assoc = ae.associate("127.0.0.1", cfg.port, ae_title=cfg.ae_title)
    try:
        assert assoc.is_established
        assert [c.abstract_syntax for c in assoc.accepted_contexts] == ["1.2.840.10008.1.1"]
        assert len(assoc.rejected_contexts) == 2
    finally:
        assoc.release()


def test_burned_in_and_oversize_instances_are_refused_with_a_reason(receiver, tmp_path, caplog):
    start, drop, files, _ = receiver
    caplog.set_level(logging.INFO, logger="aooct.dicom")
    burned = tmp_path / "burned.dcm"
    write_opt(burned, np.ones((2, 32, 8), np.float32), 7, burned_in=True)
    cfg, assembler = start(max_instance_bytes=files[0].stat().st_size - 1)
    status = _scu_store(cfg, burned)
    assert status.Status == 0xC000 and "BurnedInAnnotation" in status.ErrorComment
    status = _scu_store(cfg, files[0])
    assert status.Status == 0xC000 and "bytes" in status.ErrorComment
    assert "refused an instance" in caplog.text
    assert not [v for v in PLANTED.values() if v in caplog.text]
    assert assembler.flush(force=True) == [] and not drop.list_keys("")


def test_a_case_without_a_location_is_quarantined_with_what_to_add(receiver):
    start, drop, files, _ = receiver
    cfg, assembler = start(defaults={})
    assert _scu_store(cfg, files[0]).Status == 0
    (written,) = assembler.flush(force=True)
    assert written.startswith("_quarantine/DCM-")
    reason = drop.get_bytes(f"{written}/REASON.txt").decode()
    assert "location_deg" in reason and "axial_length_mm" in reason
    assert drop.exists(f"{written}/vol_00.dcm") and drop.exists(f"{written}/case.json")


def test_a_series_staged_before_a_restart_is_assembled_after_it(receiver, tmp_path):
    start, drop, files, mapped = receiver
    cfg, first = start()
    assert _scu_store(cfg, files[0]).Status == 0
    assert not drop.list_keys("")   # not idle yet: the receiver stops here
    again = SeriesAssembler(first.staging, drop, uid_key=KEY, idle_s=0.0, map_subject=lambda s, p: p,
                            defaults=first.defaults, max_instance_bytes=1 << 30)
    (written,) = again.flush()
    assert json.loads(drop.get_bytes(f"{written}/case.json"))["volumes"] == ["vol_00.dcm"]
    assert not list(first.staging.iterdir())


def test_receiver_settings_from_the_environment():
    cfg = ReceiverConfig.from_env({"AOOCT_DICOM_PORT": "4242", "AOOCT_DICOM_PEERS": "OCT1@10.0.0.12, X@::1",
                                   "AOOCT_DICOM_CASE_DEFAULTS": '{"axial_length_mm": 23.5}'})
    assert cfg.port == 4242 and cfg.peers == (("OCT1", "10.0.0.12"), ("X", "::1"))
    assert cfg.allows("OCT1", "10.0.0.12") and not cfg.allows("OCT1", "10.0.0.13")
    assert not cfg.allows("X", "10.0.0.12")
    open_cfg = ReceiverConfig.from_env({})
    assert open_cfg.allows("ANY", "127.0.0.1") and not open_cfg.allows("ANY", "10.0.0.12")
    for env, match in (({"AOOCT_DICOM_PEERS": "nohost"}, "AE@host"),
                       ({"AOOCT_DICOM_PORT": "x"}, "must be a number"),
                       ({"AOOCT_DICOM_CASE_DEFAULTS": '{"eye": "OD"}'}, "keys among"),
                       ({"AOOCT_DICOM_AE_TITLE": "A" * 17}, "16 characters")):
        with pytest.raises(ValueError, match=match):
            ReceiverConfig.from_env(env)


def test_a_full_disk_answers_out_of_resources_so_the_sender_retries(receiver, monkeypatch):
    import errno

    import api.dicom_cases as cases

    start, drop, files, _ = receiver
    cfg, assembler = start()

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cases, "_write_atomic", full)
    status = _scu_store(cfg, files[0])
    assert status.Status == 0xA700 and "No space left" in status.ErrorComment
    monkeypatch.undo()
    assert _scu_store(cfg, files[0]).Status == 0   # space again: the retry is stored


@DCMTK
def test_aooct_dicom_scp_starts_on_embedded_defaults(tmp_path):
    import os
    import time

    port = _port()
    env = {**os.environ, "AOOCT_HOME": str(tmp_path / "home")}
    for var in ("AOOCT_DB_URL", "AOOCT_DROP", "AOOCT_OBJECT_STORE"):
        env.pop(var, None)
    proc = subprocess.Popen([sys.executable, "-m", "aooct.cli", "dicom-scp", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    try:
        deadline = time.monotonic() + 60
        while True:
            echo = subprocess.run(["echoscu", "-aec", "AOOCT", "127.0.0.1", str(port)],
                                  capture_output=True, timeout=30)
            if echo.returncode == 0 or time.monotonic() > deadline or proc.poll() is not None:
                break
            time.sleep(0.5)
        assert echo.returncode == 0, proc.stdout.read() if proc.poll() is not None else "no echo"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_an_instance_over_the_limit_is_aborted_while_it_streams_and_leaves_nothing(receiver, tmp_path, caplog):
    import time

    import pydicom
    from pynetdicom import AE

    start, drop, files, _ = receiver
    caplog.set_level(logging.INFO, logger="aooct.dicom")
    incoming = tmp_path / "staging.incoming"
    incoming.mkdir()
    (incoming / "tmpleft.dcm").write_bytes(b"\0" * 128 + b"DICM" + PLANTED["PatientName"].encode())
    big = tmp_path / "big.dcm"
    write_opt(big, np.random.default_rng(1).gamma(1.0, 1.0, (16, 256, 256)).astype(np.float32) + 0.1, 5)
    cfg, assembler = start(max_instance_bytes=64 * 1024, stale_s=0.5)
    assert not (incoming / "tmpleft.dcm").exists()          # a cut-off transfer of a past run
    ds = pydicom.dcmread(big)
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", cfg.port, ae_title=cfg.ae_title)
    assert assoc.is_established
    status = assoc.send_c_store(ds)
    assert "Status" not in status, status                          # cut off before the end
    deadline = time.monotonic() + 10
    while assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not assoc.is_established
    assert "more than 65536 bytes for one instance" in caplog.text
    deadline = time.monotonic() + 10
    while any(incoming.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(incoming.iterdir()), "a partial instance was left on disk"
    assert _scu_store(cfg, files[0]).Status == 0x0000             # the receiver goes on
    assert not any(incoming.iterdir())


def test_a_series_that_fails_to_assemble_is_retried_with_backoff_and_holds_back_no_other(tmp_path, monkeypatch):
    drop = LocalObjectStore(tmp_path / "drop")
    assembler = SeriesAssembler(tmp_path / "staging", drop, uid_key=KEY, idle_s=0.0,
                                map_subject=lambda s, p: p, defaults={}, max_instance_bytes=1 << 20)
    for series in ("aaa", "bbb"):
        (tmp_path / "staging" / series).mkdir()
        (tmp_path / "staging" / series / "x.dcm").write_bytes(b"staged")
    calls = []

    def assemble(folder, files):
        calls.append(folder.name)
        if folder.name == "aaa":
            raise OSError("drop store unreachable")
        return folder.name

    monkeypatch.setattr(assembler, "_assemble", assemble)
    t0 = time.time() + 10
    assert assembler.flush(now=t0) == ["bbb"]                  # aaa failed, bbb still written
    assert assembler.flush(now=t0 + 0.5) == ["bbb"] and calls.count("aaa") == 1   # aaa waits 1 s
    assembler.flush(now=t0 + 1.1)
    assembler.flush(now=t0 + 2.0)                               # next wait: 2 s
    assert calls.count("aaa") == 2
    assembler.flush(now=t0 + 3.2)
    assert calls.count("aaa") == 3


def test_an_association_flood_is_capped_and_the_receiver_serves_afterwards(receiver):
    # 12 peers at once: at most 8 associations are held (ae.maximum_associations); the others
    # are rejected, not queued; once the flood lets go, an instance is stored as usual.
    from pynetdicom import AE

    start, _, files, _ = receiver
    cfg, _ = start()
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context("1.2.840.10008.1.1")
    held = [ae.associate("127.0.0.1", cfg.port, ae_title=cfg.ae_title) for _ in range(12)]
    up = [a for a in held if a.is_established]
    assert 1 <= len(up) <= 8 and any(a.is_rejected for a in held)
    for a in up:
        a.release()
    assert _scu_store(cfg, files[0]).Status == 0x0000
