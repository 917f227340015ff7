"""The gateway's settings from the environment (embedded defaults for everything).

``AOOCT_API_HOST`` (127.0.0.1), ``AOOCT_API_PORT`` (8600), ``AOOCT_API_TOKEN_TTL_S`` (900),
``AOOCT_API_PASSWORD_SIGN_IN`` (``1``; ``0`` leaves only SSO tokens). Rate limits:
``AOOCT_API_RATE_PER_MIN`` (600 requests a minute per caller), ``AOOCT_API_RATE_IP_PER_MIN``
(1200 per client address), ``AOOCT_API_TRUSTED_PROXIES`` (comma-separated addresses whose
``X-Forwarded-For`` is believed; none), ``AOOCT_REDIS_URL`` (counts shared in Redis; default
in the process's memory). ``AOOCT_DAGSTER_URL`` (``http://127.0.0.1:3000``): the
dagster-webserver the run routes talk to. SSO: set
``AOOCT_OIDC_ISSUER`` to accept the provider's tokens, with ``AOOCT_OIDC_AUDIENCE`` (required
then: the gateway's client id), ``AOOCT_OIDC_JWKS_URL`` (default: discovery),
``AOOCT_OIDC_ROLES_CLAIM`` (``realm_access.roles``), ``AOOCT_OIDC_ROLE_MAP``
(``group=Role,group2=Role2``) and ``AOOCT_OIDC_SUBJECT_CLAIM`` (``email``).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from api.auth import OIDCSettings

__all__ = ["GatewaySettings"]


@dataclass(frozen=True)
class GatewaySettings:
    host: str = "127.0.0.1"
    port: int = 8600
    token_ttl_s: float = 900.0
    password_sign_in: bool = True
    oidc: OIDCSettings | None = None
    rate_per_min: int = 600
    rate_ip_per_min: int = 1200
    trusted_proxies: frozenset[str] = frozenset()
    redis_url: str | None = None
    dagster_url: str = "http://127.0.0.1:3000"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "GatewaySettings":
        def number(name, default, kind=float):
            raw = env.get(name)
            if raw in (None, ""):
                return default
            try:
                return kind(raw)
            except ValueError:
                raise ValueError(f"{name} must be a number; got {raw!r}") from None

        port = number("AOOCT_API_PORT", cls.port, int)
        if not 1 <= port <= 65535:
            raise ValueError(f"AOOCT_API_PORT must be in [1, 65535]; got {port}")
        flag = env.get("AOOCT_API_PASSWORD_SIGN_IN", "1").strip().lower()
        if flag not in ("0", "1", "true", "false", "yes", "no"):
            raise ValueError(f"AOOCT_API_PASSWORD_SIGN_IN must be 1 or 0; got {flag!r}")
        oidc = None
        issuer = env.get("AOOCT_OIDC_ISSUER", "").strip()
        if issuer:
            audience = env.get("AOOCT_OIDC_AUDIENCE", "").strip()
            if not audience:
                raise ValueError("AOOCT_OIDC_ISSUER is set but AOOCT_OIDC_AUDIENCE is not: set it to the "
                                 "gateway's client id at the provider (the aud its tokens carry)")
            role_map = {}
            for pair in filter(None, (p.strip() for p in env.get("AOOCT_OIDC_ROLE_MAP", "").split(","))):
                name, sep, role = pair.partition("=")
                if not sep:
                    raise ValueError(f"AOOCT_OIDC_ROLE_MAP entries are group=Role; got {pair!r}")
                role_map[name.strip()] = role.strip()
            oidc = OIDCSettings(issuer=issuer, audience=audience, jwks_url=env.get("AOOCT_OIDC_JWKS_URL") or None,
                                roles_claim=env.get("AOOCT_OIDC_ROLES_CLAIM", "realm_access.roles"),
                                role_map=role_map, subject_claim=env.get("AOOCT_OIDC_SUBJECT_CLAIM", "email"))
        rate, rate_ip = number("AOOCT_API_RATE_PER_MIN", cls.rate_per_min, int), \
            number("AOOCT_API_RATE_IP_PER_MIN", cls.rate_ip_per_min, int)
        if rate < 1 or rate_ip < 1:
            raise ValueError("AOOCT_API_RATE_PER_MIN and AOOCT_API_RATE_IP_PER_MIN must be >= 1; "
                             f"got {rate}, {rate_ip}")
        proxies = frozenset(p.strip() for p in env.get("AOOCT_API_TRUSTED_PROXIES", "").split(",") if p.strip())
        return cls(host=env.get("AOOCT_API_HOST", cls.host), port=port,
                   token_ttl_s=number("AOOCT_API_TOKEN_TTL_S", cls.token_ttl_s),
                   password_sign_in=flag in ("1", "true", "yes"), oidc=oidc, rate_per_min=rate,
                   rate_ip_per_min=rate_ip, trusted_proxies=proxies, redis_url=env.get("AOOCT_REDIS_URL") or None,
                   dagster_url=env.get("AOOCT_DAGSTER_URL") or cls.dagster_url)
