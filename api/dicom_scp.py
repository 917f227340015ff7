"""The DICOM receiver (C-ECHO, C-STORE of Ophthalmic Tomography), started by ``aooct dicom-scp``.

Configured like every endpoint, by environment (embedded defaults in brackets):

================================  ===========================================================
``AOOCT_DICOM_PORT``              port to listen on [11112]
``AOOCT_DICOM_HOST``              address to bind [``127.0.0.1``; ``0.0.0.0`` for the network]
``AOOCT_DICOM_AE_TITLE``          this receiver's AE title; a call to another is rejected [AOOCT]
``AOOCT_DICOM_PEERS``             comma-separated ``AE@host`` allowed to associate; empty: any
                                  AE title, from the loopback address only []
``AOOCT_DICOM_IDLE_S``            seconds without a new instance that complete a series [30]
``AOOCT_DICOM_MAX_INSTANCE_BYTES`` largest instance accepted [2 GiB]
``AOOCT_DICOM_CASE_DEFAULTS``     JSON of case.json fields OPT does not carry, e.g.
                                  ``{"location_deg": {"horizontal": 2, "vertical": 0}}``
                                  (also ``axial_length_mm``) [none: such cases are quarantined]
================================  ===========================================================

An association from a peer not in ``AOOCT_DICOM_PEERS`` (AE title *and* address) is rejected
before any data is exchanged (A-ASSOCIATE-RJ, calling AE title not recognised). Only the
Ophthalmic Tomography storage class, in uncompressed or deflated transfer syntaxes, is
negotiated: other classes and compressed syntaxes are refused at the presentation context.
Instances stream to disk (pynetdicom's ``STORE_RECV_CHUNKED_DATASET``) into a private
``<staging>.incoming/`` beside the staging folder (never the system temporary folder, where
an aborted transfer would leave a patient's data), and are de-identified by
:class:`api.dicom_cases.SeriesAssembler` before anything is kept; a refused instance gets a
failure status with the reason in ``ErrorComment`` and a log line. An association that sends
more than ``AOOCT_DICOM_MAX_INSTANCE_BYTES`` for one instance is aborted while it streams;
partial files of aborted or dropped transfers are deleted at start and once they are
:data:`STALE_S` old.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from api.dicom_cases import MAX_RETRY_S
from aooct_core.io import InputError
from aooct_core.io.dicom import OPT_SOP_CLASS_UID
from aooct_core.io.dicom_open import NATIVE_SYNTAXES

__all__ = ["ReceiverConfig", "make_receiver", "serve", "STATUS", "STALE_S", "sweep_incoming"]

LOG = logging.getLogger("aooct.dicom")
VERIFICATION = "1.2.840.10008.1.1"
#: C-STORE statuses (PS3.4 B.2.3) this receiver answers with.
STATUS = {"success": 0x0000, "out_of_resources": 0xA700, "cannot_understand": 0xC000,
          "not_authorized": 0x0124}
#: A partial instance not written to for this long is an aborted or dropped transfer (twice
#: the network timeout, after which pynetdicom has given the association up).
STALE_S = 120.0
#: What a C-STORE adds to the instance's bytes on the wire: the command set and file meta
#: (this much) plus 6 bytes of PDU header per P-DATA fragment (under 1 %).
_STREAM_SLACK_BYTES = 64 << 10


@dataclass(frozen=True)
class ReceiverConfig:
    """Settings of the receiver (see the module docstring for the environment variables)."""

    port: int = 11112
    host: str = "127.0.0.1"
    ae_title: str = "AOOCT"
    peers: tuple[tuple[str, str], ...] = ()
    idle_s: float = 30.0
    max_instance_bytes: int = 2 << 30
    case_defaults: tuple[tuple[str, object], ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "ReceiverConfig":
        env = os.environ if env is None else env

        def number(name, cast, default, lo):
            text = env.get(name, "").strip()
            try:
                value = cast(text) if text else default
            except ValueError:
                raise ValueError(f"{name} must be a number; got {text!r}") from None
            if value < lo:
                raise ValueError(f"{name} must be at least {lo}; got {text!r}")
            return value

        peers = []
        for item in filter(None, (p.strip() for p in env.get("AOOCT_DICOM_PEERS", "").split(","))):
            ae, sep, host = item.partition("@")
            if not sep or not ae or not host or len(ae) > 16:
                raise ValueError(f"AOOCT_DICOM_PEERS entry {item!r} must be AE@host, e.g. "
                                 "OCT1@10.0.0.12 (AE titles have at most 16 characters)")
            peers.append((ae, host))
        defaults_text = env.get("AOOCT_DICOM_CASE_DEFAULTS", "").strip()
        try:
            defaults = json.loads(defaults_text) if defaults_text else {}
        except json.JSONDecodeError as exc:
            raise ValueError(f"AOOCT_DICOM_CASE_DEFAULTS must be JSON: {exc}") from None
        allowed = {"location_deg", "axial_length_mm"}
        if not isinstance(defaults, dict) or set(defaults) - allowed:
            raise ValueError(f"AOOCT_DICOM_CASE_DEFAULTS must be a JSON object with keys among "
                             f"{sorted(allowed)}; got {defaults_text!r}")
        ae_title = env.get("AOOCT_DICOM_AE_TITLE", "").strip() or "AOOCT"
        if len(ae_title) > 16:
            raise ValueError(f"AOOCT_DICOM_AE_TITLE has at most 16 characters; got {ae_title!r}")
        return cls(port=number("AOOCT_DICOM_PORT", int, 11112, 1),
                   host=env.get("AOOCT_DICOM_HOST", "").strip() or "127.0.0.1",
                   ae_title=ae_title, peers=tuple(peers),
                   idle_s=number("AOOCT_DICOM_IDLE_S", float, 30.0, 0.0),
                   max_instance_bytes=number("AOOCT_DICOM_MAX_INSTANCE_BYTES", int, 2 << 30, 1),
                   case_defaults=tuple(sorted(defaults.items())))

    def allows(self, ae_title: str, address: str) -> bool:
        """Whether calling AE ``ae_title`` from ``address`` may associate."""
        if not self.peers:
            try:
                return ipaddress.ip_address(address).is_loopback
            except ValueError:
                return False
        return (ae_title, address) in self.peers


def _status(code: str, comment: str):
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.Status = STATUS[code]
    ds.ErrorComment = comment[:64]  # LO
    return ds


def incoming_folder(assembler) -> Path:
    """The private folder instances stream into: ``<staging>.incoming`` beside the staging
    folder (whose sub-folders are series), mode 0700."""
    staging = Path(assembler.staging)
    path = staging.with_name(staging.name + ".incoming")
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def sweep_incoming(folder: Path, *, older_than_s: float = 0.0) -> int:
    """Delete partial instances in ``folder`` not written to for ``older_than_s``; their count."""
    import time

    now, n = time.time(), 0
    for path in folder.iterdir():
        try:
            if path.is_file() and now - path.stat().st_mtime >= older_than_s:
                path.unlink()
                n += 1
        except FileNotFoundError:   # finished and removed by its handler meanwhile
            continue
    return n


def make_receiver(cfg: ReceiverConfig, assembler):
    """The pynetdicom AE and its event handlers for ``cfg``, storing through ``assembler``."""
    import functools
    import tempfile

    import pynetdicom.dimse_messages
    from pynetdicom import AE, _config, evt

    _config.STORE_RECV_CHUNKED_DATASET = True  # large instances stream to a temporary file
    # ... in this receiver's private folder: pynetdicom opens it with NamedTemporaryFile in the
    # system temporary folder, and an aborted transfer leaves it there.
    incoming = incoming_folder(assembler)
    left = sweep_incoming(incoming)
    if left:
        LOG.warning("deleted %d partial instance(s) of transfers cut off before the last stop", left)
    pynetdicom.dimse_messages.NamedTemporaryFile = functools.partial(tempfile.NamedTemporaryFile,
                                                                     dir=incoming)
    limit = int(assembler.max_instance_bytes) * 101 // 100 + _STREAM_SLACK_BYTES
    streamed: dict[int, int] = {}   # association → bytes received since its last instance
    ae = AE(ae_title=cfg.ae_title)
    ae.require_called_aet = True
    ae.maximum_associations = 8
    ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = 60
    ae.add_supported_context(VERIFICATION)
    ae.add_supported_context(OPT_SOP_CLASS_UID, sorted(NATIVE_SYNTAXES))

    def on_requested(event):
        rq = event.assoc.requestor
        calling = rq.primitive.calling_ae_title.strip()
        if not cfg.allows(calling, rq.address):
            LOG.warning("refused association from AE %r at %s: not in AOOCT_DICOM_PEERS",
                        calling, rq.address)
            event.assoc.acse.send_reject(0x01, 0x01, 0x03)  # permanent; calling AE not recognised
            event.assoc.kill()  # as pynetdicom's own rejections: waits until the PDU is sent

    def on_echo(event):
        return 0x0000

    def on_data(event):
        key = id(event.assoc)
        streamed[key] = n = streamed.get(key, 0) + len(event.data)
        if n > limit:
            rq = event.assoc.requestor
            LOG.warning("aborted the association from %s@%s: more than %d bytes for one instance "
                        "(AOOCT_DICOM_MAX_INSTANCE_BYTES)", rq.ae_title.strip(), rq.address,
                        assembler.max_instance_bytes)
            streamed[key] = -(1 << 62)      # abort once
            event.assoc.abort(block=False)

    def on_closed(event):
        streamed.pop(id(event.assoc), None)

    def on_store(event):
        rq = event.assoc.requestor
        source = f"C-STORE from {rq.ae_title.strip()}@{rq.address}"
        streamed[id(event.assoc)] = 0
        try:
            got = assembler.receive(Path(event.dataset_path), source=source, calling_ae=rq.ae_title.strip())
        except InputError as exc:
            LOG.warning("refused an instance (%s): %s", source, exc.problem)
            return _status("cannot_understand", exc.problem)
        except OSError as exc:  # disk full, staging unwritable: the sender may retry later
            LOG.error("could not stage an instance (%s): %s", source, exc)
            return _status("out_of_resources", f"receiver could not store: {exc.strerror or exc}")
        LOG.info("stored instance of series %s (%s)", got.series, source)
        return 0x0000

    handlers = [(evt.EVT_REQUESTED, on_requested), (evt.EVT_C_ECHO, on_echo),
                (evt.EVT_C_STORE, on_store), (evt.EVT_DATA_RECV, on_data),
                (evt.EVT_CONN_CLOSE, on_closed)]
    return ae, handlers


def serve(cfg: ReceiverConfig, assembler, *, block: bool = True, stop: threading.Event | None = None,
          stale_s: float = STALE_S):
    """Listen on ``cfg.host:cfg.port`` and assemble idle series every second; partial
    instances idle for ``stale_s`` are deleted.

    With ``block=False`` returns ``(server, stop_event)``: set the event and call
    ``server.shutdown()`` to stop (staged series are kept for the next start).
    """
    ae, handlers = make_receiver(cfg, assembler)
    stop = stop or threading.Event()

    incoming = incoming_folder(assembler)

    def flusher():
        import time

        tick = min(1.0, max(cfg.idle_s / 4, 0.05))
        backoff, next_try = tick, 0.0
        while not stop.wait(tick):
            if time.monotonic() >= next_try:
                try:
                    assembler.flush()
                    backoff = tick
                except Exception:  # keep receiving; the series stays staged and is retried
                    LOG.exception("assembling received series failed; retrying in %g s", backoff)
                    next_try = time.monotonic() + backoff
                    backoff = min(2 * backoff, MAX_RETRY_S)
            if sweep_incoming(incoming, older_than_s=stale_s):
                LOG.warning("deleted partial instance(s) of transfers idle for %g s", stale_s)

    threading.Thread(target=flusher, name="aooct-dicom-flush", daemon=True).start()
    server = ae.start_server((cfg.host, cfg.port), block=False, evt_handlers=handlers)
    LOG.info("DICOM receiver %s listening on %s:%d", cfg.ae_title, cfg.host, cfg.port)
    if not block:
        return server, stop
    try:
        stop.wait()
    finally:
        stop.set()
        server.shutdown()
    return server, stop
