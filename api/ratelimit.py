"""Request rate limits of the gateway: per client address and per authenticated caller.

A sliding log: each key keeps the times of the requests it was allowed in the last
``window_s``; a request is admitted while fewer than ``limit`` are there, so no span of
``window_s`` ever holds more than ``limit`` admitted requests (refused ones do not count: a
client that keeps asking gets through at the allowed rate). Storage is Redis when
``AOOCT_REDIS_URL`` is set (one sorted set per key, checked and updated by one Lua script,
so every gateway process shares the log atomically) or this process's memory, bounded to
``max_keys`` keys. A refused request gets ``429`` with ``Retry-After`` — when the oldest
logged request leaves the window.

The client address is the TCP peer; ``X-Forwarded-For`` is believed only when the peer is one
of the configured proxies (``AOOCT_API_TRUSTED_PROXIES``), and then its right-most entry not
itself a trusted proxy — so a client cannot spoof its way past the limit.
"""
from __future__ import annotations

import math
import threading
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass

__all__ = ["RateLimit", "MemoryLog", "RedisLog", "Limiter", "client_address"]


@dataclass(frozen=True)
class RateLimit:
    """At most ``limit`` requests in any ``window_s`` seconds."""

    limit: int
    window_s: float = 60.0

    def __post_init__(self):
        if not 1 <= self.limit <= 100_000 or not 1 <= self.window_s <= 86400:
            raise ValueError(f"a rate limit needs limit in [1, 100000] and window_s in [1, 86400]; got {self}")


class MemoryLog:
    """Request logs in this process (thread-safe), at most ``max_keys`` keys (least recent dropped)."""

    def __init__(self, max_keys: int = 100_000):
        self._logs: OrderedDict[str, deque] = OrderedDict()
        self._lock = threading.Lock()
        self.max_keys = int(max_keys)

    def admit(self, key: str, now: float, rule: RateLimit) -> float:
        """0 when admitted (and logged), else the seconds until it would be."""
        with self._lock:
            log = self._logs.get(key)
            if log is None:
                log = self._logs[key] = deque()
                while len(self._logs) > self.max_keys:
                    self._logs.popitem(last=False)
            self._logs.move_to_end(key)
            while log and log[0] <= now - rule.window_s:
                log.popleft()
            if len(log) < rule.limit:
                log.append(now)
                return 0.0
            return log[0] + rule.window_s - now


_ADMIT = """
local key, now, win, limit = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - win)
if redis.call('ZCARD', key) < limit then
  redis.call('ZADD', key, now, ARGV[4])
  redis.call('PEXPIRE', key, math.ceil(win * 1000))
  return '0'
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return tostring(tonumber(oldest[2]) + win - now)
"""


class RedisLog:
    """Request logs in Redis (sorted sets), shared by every gateway process."""

    def __init__(self, url: str, *, prefix: str = "aooct:rl:"):
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._script = self._redis.register_script(_ADMIT)
        self.prefix = prefix

    def admit(self, key: str, now: float, rule: RateLimit) -> float:
        wait = self._script(keys=[self.prefix + key], args=[repr(now), rule.window_s, rule.limit, uuid.uuid4().hex])
        return float(wait)


class Limiter:
    """Decide one request against a :class:`RateLimit` for a key (``ip:...``, ``sub:...``)."""

    def __init__(self, log, *, clock=time.time):
        self.log, self.clock = log, clock

    def hit(self, key: str, rule: RateLimit) -> float:
        """0 when allowed, else the whole seconds to wait (for ``Retry-After``, at least 1)."""
        wait = self.log.admit(key, self.clock(), rule)
        return 0.0 if wait <= 0 else float(max(1, math.ceil(wait)))


def client_address(peer: str | None, forwarded_for: str | None, trusted_proxies: frozenset[str]) -> str:
    """The address a request is limited and audited by (see the module docstring)."""
    if not peer:
        return "unknown"
    if peer not in trusted_proxies or not forwarded_for:
        return peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if hop not in trusted_proxies:
            return hop[:64]
    return peer
