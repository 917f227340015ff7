"""A fault-injecting HTTP proxy on loopback, in front of a (moto) S3 server, for tests.

The platform's claim is that S3 trouble — 500 ``InternalError``, 503 ``SlowDown``, a
server that stops answering, a dropped connection — is retried, and that what cannot be
retried fails the case with a clear status and nothing partial visible. Injecting the
faults into boto3 itself would skip the very layers that must cope (urllib3, botocore's
retry handler, the store's error mapping), so this proxy sits on the wire instead:

    boto3 ──HTTP──▶ FaultProxy (127.0.0.1:p) ──HTTP──▶ moto server (127.0.0.1:q)

Each request is classified as an S3 operation (``PutObject``, ``CopyObject``,
``GetObject``, ...) and checked against a :class:`FaultSchedule` of :class:`FaultRule`\\ s.
A rule fires on given request numbers, with a probability (seeded RNG, so a schedule
replays identically for the same request sequence), always, or from its first firing on
for every request (``latch``: "S3 went down here and stayed down").

Fault kinds (:data:`FAULT_KINDS`):

``"500"`` / ``"503"``
    answered by the proxy with S3's XML error (``InternalError`` / ``SlowDown``); the
    request never reaches S3.
``"timeout"``
    the request is held, unanswered, for ``delay_s`` (longer than the client's read
    timeout), then the connection is closed; S3 never sees it.
``"slow"``
    the request *is* applied by S3, but its answer is held for ``delay_s``: the client
    times out on an operation that happened (what a real network partition does).
``"drop"``
    the connection is closed without an answer; S3 never sees the request.
``"truncate"``
    S3's answer is sent with its full ``Content-Length`` but only half its body, then the
    connection is closed (a connection lost while the client reads an object).

The proxy binds and forwards to loopback addresses only, and is bounded: every handler
socket times out, held requests end when the proxy stops, and the proxy stops by itself
after ``max_lifetime_s``.
"""
from __future__ import annotations

import collections
import http.client
import ipaddress
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["FAULT_KINDS", "FaultRule", "FaultSchedule", "FaultProxy", "s3_operation", "wait_for_port"]

FAULT_KINDS = ("500", "503", "timeout", "slow", "drop", "truncate")

_S3_ERRORS = {
    "500": ("Internal Server Error", "InternalError",
            "We encountered an internal error. Please try again."),
    "503": ("Slow Down", "SlowDown", "Please reduce your request rate."),
}
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
               "trailers", "transfer-encoding", "upgrade", "proxy-connection"}
#: Largest request body the proxy reads (a test object store holds MBs, not GBs).
MAX_BODY_BYTES = 512 << 20


def _require_loopback(host: str, what: str) -> str:
    """``host`` if it is a loopback address (or ``localhost``); ValueError otherwise."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    raise ValueError(f"{what} must be a loopback address (127.0.0.1, ::1 or localhost); got "
                     f"{host!r} — the fault proxy never listens on or talks to other hosts")


def s3_operation(method: str, path: str, headers) -> tuple[str, str]:
    """(S3 operation name, object key) of a path-style S3 request.

    >>> s3_operation("PUT", "/b/cases/x.npy", {"x-amz-copy-source": "b/t"})
    ('CopyObject', 'cases/x.npy')
    >>> s3_operation("GET", "/b?list-type=2&prefix=cases/", {})
    ('ListObjectsV2', '')
    """
    parts = urlsplit(path)
    query = parse_qs(parts.query, keep_blank_values=True)
    _bucket, _, key = unquote(parts.path).lstrip("/").partition("/")
    method = method.upper()
    if not key:
        if method == "GET":
            return ("ListObjectsV2" if query.get("list-type") == ["2"] else "ListObjects"), ""
        if method == "POST" and "delete" in query:
            return "DeleteObjects", ""
        return {"HEAD": "HeadBucket", "PUT": "CreateBucket", "DELETE": "DeleteBucket"}.get(
            method, method), ""
    if method == "PUT":
        copy = any(k.lower() == "x-amz-copy-source" for k in headers.keys())
        return ("CopyObject" if copy else "PutObject"), key
    return {"GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}.get(method, method), key


@dataclass
class FaultRule:
    """When to inject one kind of fault.

    Parameters
    ----------
    kind : str
        One of :data:`FAULT_KINDS`.
    operations : collection of str, optional
        S3 operations the rule applies to (``{"PutObject", "CopyObject"}``); None: all.
    key_contains : str, optional
        Apply only to requests whose object key contains this text.
    nth : collection of int, optional
        Fire on these (1-based) numbers among the requests the rule applies to.
    probability : float
        Fire on each applicable request with this probability (the schedule's seeded RNG).
    always : bool
        Fire on every applicable request (the default when neither ``nth`` nor
        ``probability`` is given).
    latch : bool
        Once fired, fire on *every* later request, whatever its operation or key.
    max_faults : int, optional
        Fire at most this many times.
    delay_s : float
        How long ``timeout`` and ``slow`` hold the request.
    """

    kind: str
    operations: frozenset[str] | None = None
    key_contains: str | None = None
    nth: frozenset[int] = frozenset()
    probability: float = 0.0
    always: bool = False
    latch: bool = False
    max_faults: int | None = None
    delay_s: float = 3.0
    seen: int = field(default=0, init=False)
    fired: int = field(default=0, init=False)
    latched: bool = field(default=False, init=False)

    def __post_init__(self):
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}; got {self.kind!r}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability must be in [0, 1]; got {self.probability}")
        if self.delay_s < 0 or self.delay_s > 120:
            raise ValueError(f"delay_s must be in [0, 120] s; got {self.delay_s}")
        self.operations = None if self.operations is None else frozenset(self.operations)
        self.nth = frozenset(self.nth)
        if not self.nth and not self.probability:
            self.always = True

    def decide(self, operation: str, key: str, rng: random.Random) -> bool:
        if self.latched:
            return True
        if self.operations is not None and operation not in self.operations:
            return False
        if self.key_contains is not None and self.key_contains not in key:
            return False
        self.seen += 1
        if self.max_faults is not None and self.fired >= self.max_faults:
            return False
        draw = rng.random() if self.probability else 1.0  # drawn only for random rules
        fire = self.always or self.seen in self.nth or draw < self.probability
        if fire:
            self.fired += 1
            self.latched = self.latch
        return fire


class FaultSchedule:
    """Ordered :class:`FaultRule`\\ s and the seeded RNG they draw from; the first rule
    that fires for a request decides its fault."""

    def __init__(self, rules: list[FaultRule] | tuple[FaultRule, ...] = (), *, seed: int = 0):
        self.rules = list(rules)
        self.rng = random.Random(seed)

    def decide(self, operation: str, key: str) -> FaultRule | None:
        chosen = None
        for rule in self.rules:  # every rule sees every request, so counts stay per rule
            if rule.decide(operation, key, self.rng) and chosen is None:
                chosen = rule
        return chosen


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # an idle keep-alive connection ends after 30 s
    server: "_Server"

    def log_message(self, format, *args):  # noqa: A002 - the signature of the base class
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
                if sum(map(len, chunks)) > MAX_BODY_BYTES:
                    raise ValueError("request body too large for the fault proxy")
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise ValueError("request body too large for the fault proxy")
        return self.rfile.read(length) if length else b""

    def _handle(self):
        proxy = self.server.proxy
        body = self._body()
        operation, key = s3_operation(self.command, self.path, self.headers)
        rule = proxy._decide(self.command, operation, key)
        kind = rule.kind if rule else None
        if kind in ("500", "503"):
            reason, code, message = _S3_ERRORS[kind]
            xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                   f"<Message>{message}</Message><Resource>{self.path}</Resource>"
                   f"<RequestId>{uuid.uuid4().hex[:16]}</RequestId></Error>").encode()
            self.send_response(int(kind), reason)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(xml)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(xml)
            return
        if kind in ("drop", "timeout"):
            if kind == "timeout":
                proxy._stopping.wait(rule.delay_s)
            self._abort()
            return
        try:
            status, reason, headers, data = proxy._forward(self.command, self.path, self.headers, body)
        except OSError:  # S3 itself is gone: the client sees a dropped connection
            self._abort()
            return
        if kind == "slow":
            proxy._stopping.wait(rule.delay_s)
        self.send_response(status, reason)
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP and not (name.lower() == "content-length"
                                                        and self.command != "HEAD"):
                self.send_header(name, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if kind == "truncate" and self.command != "HEAD" and len(data) > 1:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self._abort()
            return
        if self.command != "HEAD":
            self.wfile.write(data)

    def _abort(self):
        """Close the connection at once, without (the rest of) an answer."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    proxy: "FaultProxy"

    def handle_error(self, request, client_address):
        import sys

        if isinstance(sys.exc_info()[1], OSError):
            return  # the client hung up (after a held answer): expected, not an error
        super().handle_error(request, client_address)


class FaultProxy:
    """Forward HTTP from ``127.0.0.1:<port>`` to ``upstream`` with scheduled faults.

    Parameters
    ----------
    upstream : str
        ``http://127.0.0.1:<port>`` of the S3 server (loopback only).
    schedule : FaultSchedule, optional
        The faults (none: a transparent proxy); replace it at any time with
        :meth:`set_schedule`.
    host : str
        Loopback address to listen on; the port is chosen free.
    max_lifetime_s : float
        The proxy stops by itself after this long (default 1 h).

    Examples
    --------
    >>> with FaultProxy("http://127.0.0.1:9") as proxy:
    ...     proxy.endpoint.startswith("http://127.0.0.1:")
    True
    """

    def __init__(self, upstream: str, schedule: FaultSchedule | None = None, *,
                 host: str = "127.0.0.1", max_lifetime_s: float = 3600.0,
                 upstream_timeout_s: float = 60.0, log_size: int = 20000):
        up = urlsplit(upstream)
        if up.scheme != "http" or not up.hostname or not up.port:
            raise ValueError(f"upstream must look like http://127.0.0.1:PORT; got {upstream!r}")
        self._upstream = (_require_loopback(up.hostname, "upstream host"), up.port)
        self._host = _require_loopback(host, "proxy address")
        self._schedule = schedule or FaultSchedule()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._max_lifetime_s = float(max_lifetime_s)
        self._upstream_timeout_s = float(upstream_timeout_s)
        self.requests = 0
        self.faults: collections.Counter = collections.Counter()   # kind -> count
        self.operations: collections.Counter = collections.Counter()
        self.log: collections.deque = collections.deque(maxlen=log_size)  # (n, method, op, key, fault)
        self._server: _Server | None = None
        self._threads: list[threading.Thread] = []

    # life cycle --------------------------------------------------------------
    def start(self) -> "FaultProxy":
        self._server = _Server((self._host, 0), _Handler)
        self._server.proxy = self
        serve = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                 name="fault-proxy", daemon=True)
        serve.start()
        deadline = threading.Timer(self._max_lifetime_s, self.stop)
        deadline.daemon = True
        deadline.start()
        self._threads = [serve]
        self._deadline = deadline
        return self

    def stop(self) -> None:
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if getattr(self, "_deadline", None) is not None:
            self._deadline.cancel()

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("the fault proxy is not running (call start() or use it as a context manager)")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # faults --------------------------------------------------------------------
    def set_schedule(self, schedule: FaultSchedule | None) -> None:
        """Replace the schedule (None: no faults from now on)."""
        with self._lock:
            self._schedule = schedule or FaultSchedule()

    def _decide(self, method: str, operation: str, key: str) -> FaultRule | None:
        with self._lock:
            self.requests += 1
            self.operations[operation] += 1
            rule = self._schedule.decide(operation, key)
            if rule is not None:
                self.faults[rule.kind] += 1
            self.log.append((self.requests, method, operation, key, rule.kind if rule else None))
            return rule

    def stats(self) -> dict:
        """Requests seen, faults injected by kind, requests by S3 operation."""
        with self._lock:
            return {"requests": self.requests, "faults": dict(self.faults),
                    "operations": dict(self.operations)}

    # forwarding ------------------------------------------------------------------
    def _forward(self, method: str, path: str, headers, body: bytes):
        conn = http.client.HTTPConnection(*self._upstream, timeout=self._upstream_timeout_s)
        try:
            out = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP}
            out["Content-Length"] = str(len(body))
            conn.request(method, path, body=body if body or method in ("PUT", "POST") else None,
                         headers=out)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp.reason, resp.getheaders(), data
        finally:
            conn.close()


def wait_for_port(host: str, port: int, timeout_s: float = 10.0) -> None:
    """Block until ``host:port`` accepts TCP connections (TimeoutError otherwise)."""
    host = _require_loopback(host, "host")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s:.0f} s") from None
            time.sleep(0.05)
