"""Rate limits: no more than the limit passes, per address and per caller, in memory and in
the real Redis; Retry-After says how long; X-Forwarded-For only from a trusted proxy."""
from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from api.gateway import create_app
from api.local_tokens import LocalTokens, Verifiers
from api.ratelimit import Limiter, MemoryLog, RateLimit, RedisLog, client_address
from api.sessions import hash_password
from resources.metadata_db import make_test_metadata_db


class Clock:
    def __init__(self, t=1_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


def _gateway(tmp_path, limiter, **kw):
    db = make_test_metadata_db(tmp_path)
    db.create_user("rita", name="Rita", email="r@lab.example", password_hash=hash_password("pw-rita-1", rounds=4),
                   role="Researcher")
    tokens = LocalTokens(tmp_path / "key.pem", db=db)
    client = TestClient(create_app(db=db, verifier=Verifiers(tokens), tokens=tokens, limiter=limiter, **kw))
    return client, {"Authorization": f"Bearer {tokens.issue('rita', 'Researcher')}"}


@pytest.mark.parametrize("storage", ["memory", "redis"])
def test_no_more_than_the_limit_passes_in_any_window(storage):
    clock = Clock()
    if storage == "redis":
        redis = pytest.importorskip("redis")
        try:
            redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1).ping()
        except redis.exceptions.ConnectionError:
            pytest.skip("no Redis on 127.0.0.1:6379 (scripts/test_services.sh starts it)")
        counter = RedisLog("redis://127.0.0.1:6379/0", prefix=f"aooct:test:{uuid.uuid4().hex}:")
    else:
        counter = MemoryLog()
    limiter, rule = Limiter(counter, clock=clock), RateLimit(10, 60.0)
    passed = []
    for step in range(600):                       # 10 minutes of one request per second
        clock.t += 1.0
        if limiter.hit("ip:1.2.3.4", rule) == 0:
            passed.append(clock.t)
    # no 60 s span holds more than the limit, and the limit is used, not starved
    worst = max(sum(1 for t in passed if s <= t < s + 60) for s in passed)
    assert worst == 10, worst
    assert len(passed) >= 95


def test_a_caller_over_the_limit_gets_429_with_retry_after(tmp_path):
    clock = Clock()
    client, h = _gateway(tmp_path, Limiter(MemoryLog(), clock=clock), caller_limit=RateLimit(3, 60.0))
    codes = [client.get("/cases", headers=h).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    r = client.get("/cases", headers=h)
    assert r.json()["type"].endswith("/rate-limited") and 1 <= int(r.headers["retry-after"]) <= 60
    clock.t += 121
    assert client.get("/cases", headers=h).status_code == 200


def test_an_address_over_the_limit_is_refused_before_authentication(tmp_path):
    client, _ = _gateway(tmp_path, Limiter(MemoryLog(), clock=Clock()), ip_limit=RateLimit(2, 60.0))
    assert [client.get("/health").status_code for _ in range(3)] == [200, 200, 429]


def test_forwarded_for_is_believed_from_trusted_proxies_only():
    proxies = frozenset({"10.0.0.1"})
    assert client_address("10.0.0.1", "203.0.113.7, 10.0.0.1", proxies) == "203.0.113.7"
    assert client_address("198.51.100.9", "203.0.113.7", proxies) == "198.51.100.9"   # spoofed
    assert client_address("10.0.0.1", None, proxies) == "10.0.0.1"
