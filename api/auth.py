"""Bearer tokens from the SSO provider, verified against its published keys.

:class:`TokenVerifier` accepts an OIDC access or ID token (a JWT) only when

* its header names an allowed asymmetric algorithm (RS256 or ES256 by default): ``none``
  and every HMAC algorithm are refused before any key is looked at, so a token signed
  with HS256 using the provider's *public* key as the secret is never verified;
* its ``kid`` is in the provider's JWKS (without a ``kid``: the provider publishes exactly
  one key of that algorithm; fetched from the discovery document or
  ``jwks_url``, cached, and refetched once on an unknown ``kid`` — a rotation at the
  provider is picked up without a restart; refetches are spaced by ``refetch_cooldown_s``
  so a flood of made-up ``kid`` values cannot turn into a flood of fetches), and that key is
  of the header's algorithm;
* the signature verifies, ``iss`` and ``aud`` are the configured ones, and ``exp`` (required),
  ``nbf`` and ``iat`` hold within ``leeway_s``.

When the JWKS cannot be fetched the verifier fails closed (:class:`ProviderUnavailable`).
Roles come from a configurable claim (a dotted path such as ``realm_access.roles``, or
``groups``), mapped to :data:`api.policy.ROLES` through ``role_map``; names that map to no
role are ignored, so a token without a known role authenticates but is allowed nothing.
"""
from __future__ import annotations

import json
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field

import jwt

from api.policy import ROLES, Principal

__all__ = ["AuthError", "OIDCSettings", "ProviderUnavailable", "TokenVerifier"]

ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256")


class AuthError(Exception):
    """The request is not authenticated (HTTP 401); the message says why."""


class ProviderUnavailable(AuthError):
    """The identity provider's keys could not be fetched: nothing is accepted (HTTP 503)."""


@dataclass(frozen=True)
class OIDCSettings:
    """Where the tokens come from and what they must say.

    Attributes
    ----------
    issuer : str
        The ``iss`` every token must carry (the provider's base URL).
    audience : str
        The ``aud`` every token must carry (the gateway's client id at the provider).
    jwks_url : str or None
        The provider's key set; None reads ``jwks_uri`` from
        ``<issuer>/.well-known/openid-configuration``.
    roles_claim : str
        Dotted path of the claim that lists the caller's roles or groups.
    role_map : mapping of str to str
        Provider role/group name → platform role; the platform's own role names map to
        themselves unless overridden.
    subject_claim : str
        Claim audited as the caller (``sub`` when it is missing).
    algorithms : tuple of str
        Allowed signature algorithms; asymmetric ones only.
    leeway_s : float
        Clock skew allowed on ``exp``, ``nbf`` and ``iat``, s.
    refetch_cooldown_s : float
        Least time between two JWKS fetches triggered by an unknown ``kid``, s.
    timeout_s : float
        Time budget of one fetch from the provider, s.
    """

    issuer: str
    audience: str
    jwks_url: str | None = None
    roles_claim: str = "realm_access.roles"
    role_map: Mapping[str, str] = field(default_factory=dict)
    subject_claim: str = "email"
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    leeway_s: float = 30.0
    refetch_cooldown_s: float = 5.0
    timeout_s: float = 5.0

    def __post_init__(self):
        bad = [a for a in self.algorithms if a not in ASYMMETRIC_ALGORITHMS]
        if bad or not self.algorithms:
            raise ValueError(f"algorithms must be asymmetric JWS algorithms from {ASYMMETRIC_ALGORITHMS}; "
                             f"got {self.algorithms!r} (HMAC and 'none' are never accepted)")
        if not 0 <= self.leeway_s <= 300:
            raise ValueError(f"leeway_s must be in [0, 300] s; got {self.leeway_s!r}")
        unknown = sorted(set(self.role_map.values()) - set(ROLES))
        if unknown:
            raise ValueError(f"role_map maps to unknown roles {unknown}; use {', '.join(ROLES)}")


class TokenVerifier:
    """Verify bearer tokens of one OIDC provider (see the module docstring)."""

    def __init__(self, settings: OIDCSettings):
        self.settings = settings
        self._client: jwt.PyJWKClient | None = None

    def _jwks_client(self) -> jwt.PyJWKClient:
        if self._client is None:
            url = self.settings.jwks_url or self._discover_jwks_url()
            self._client = jwt.PyJWKClient(url, cache_jwk_set=True, lifespan=300,
                                           timeout=self.settings.timeout_s,
                                           cooldown_duration=self.settings.refetch_cooldown_s)
        return self._client

    def _discover_jwks_url(self) -> str:
        url = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            with urllib.request.urlopen(url, timeout=self.settings.timeout_s) as resp:  # noqa: S310 (configured URL)
                doc = json.loads(resp.read(1 << 20))
        except (OSError, ValueError) as exc:
            raise ProviderUnavailable(f"cannot read the identity provider's discovery document {url}: {exc}") \
                from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("jwks_uri"), str):
            raise ProviderUnavailable(f"the discovery document {url} names no jwks_uri")
        return doc["jwks_uri"]

    def verify(self, token: str) -> Principal:
        """The caller a bearer token stands for; :class:`AuthError` when it is not acceptable."""
        s = self.settings
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(f"the bearer token is not a JWT: {exc}") from exc
        alg = header.get("alg")
        if alg not in s.algorithms:
            raise AuthError(f"token algorithm {alg!r} is not accepted; the gateway accepts {', '.join(s.algorithms)}")
        kid = header.get("kid")
        try:
            if kid is None:
                key = self._only_key(alg)
            elif isinstance(kid, str) and kid:
                key = self._jwks_client().get_signing_key(kid)
            else:
                raise AuthError(f"the token's kid must be a string; got {kid!r}")
        except jwt.PyJWKClientConnectionError as exc:
            raise ProviderUnavailable(f"cannot fetch the identity provider's keys: {exc}") from exc
        except jwt.PyJWKClientError as exc:
            raise AuthError(f"the token's signing key {kid!r} is not one of the provider's keys") from exc
        if key.algorithm_name != alg:
            raise AuthError(f"the token says {alg} but key {kid!r} is a {key.algorithm_name} key")
        try:
            claims = jwt.decode(token, key.key, algorithms=[alg], audience=s.audience, issuer=s.issuer,
                                leeway=s.leeway_s, options={"require": ["exp", "iss", "aud", "sub"]})
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("the token has expired; sign in again") from exc
        except jwt.ImmatureSignatureError as exc:
            raise AuthError("the token is not valid yet (nbf/iat in the future); check the clocks") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthError(f"the token is not for this gateway (aud must be {s.audience!r})") from exc
        except jwt.InvalidIssuerError as exc:
            raise AuthError(f"the token was not issued by {s.issuer!r}") from exc
        except jwt.PyJWTError as exc:
            raise AuthError(f"the token does not verify: {exc}") from exc
        return Principal(subject=str(claims.get(s.subject_claim) or claims["sub"]),
                         roles=self._roles(claims), via="oidc")

    def _only_key(self, alg: str):
        # A token without a kid (RFC 7515 makes it optional; oidc-provider-mock sends none):
        # accepted only when the provider publishes exactly one signing key, of this algorithm.
        keys = [k for k in self._jwks_client().get_signing_keys() if k.algorithm_name == alg]
        if len(keys) != 1:
            raise AuthError(f"the token names no signing key (kid) and the provider has {len(keys)} {alg} keys")
        return keys[0]

    def _roles(self, claims: Mapping) -> frozenset[str]:
        value = claims
        for part in self.settings.roles_claim.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        names = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        mapping = {r: r for r in ROLES} | dict(self.settings.role_map)
        return frozenset(mapping[n] for n in names if isinstance(n, str) and n in mapping)
