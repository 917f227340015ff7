"""The gateway's own short-lived tokens, for password sign-in on the embedded default.

Without an SSO provider the gateway signs in users from the metadata DB itself (bcrypt
hashes, the lockout of :func:`api.sessions.password_sign_in`) and hands out ES256 JWTs that
live ``ttl_s`` (15 min by default). They are checked as strictly as the provider's
(:mod:`api.auth`): ES256 only, this gateway's ``iss`` and ``aud``, ``exp`` required, the key
id matching. The signing key is an EC P-256 key created on first use in
``<AOOCT_HOME>/api/token_key.pem`` (mode 0600); a token also carries the user's role *at
issue*, and each request re-reads the user's row, so a deactivated user or a changed role
takes effect at once, not at the token's expiry.
"""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from api.auth import AuthError
from api.policy import Principal
from api.service_tokens import is_service_token

__all__ = ["LocalTokens", "Verifiers", "LOCAL_ISSUER", "LOCAL_AUDIENCE"]

LOCAL_ISSUER = "urn:aooct:gateway"
LOCAL_AUDIENCE = "urn:aooct:api"


def _load_or_create_key(path: Path) -> ec.EllipticCurvePrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path}: not an EC private key; delete it to let the gateway make a new one "
                             "(tokens already issued stop working)")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    os.replace(tmp, path)
    return key


class LocalTokens:
    """Issue and verify the gateway's own tokens.

    Parameters
    ----------
    key_path : path
        PEM file of the EC P-256 signing key (created when missing).
    db : MetadataDB
        Where each request re-reads the user (active, role).
    ttl_s : float
        Lifetime of an issued token, s (60 s – 12 h).
    """

    def __init__(self, key_path: str | Path, *, db, ttl_s: float = 900.0):
        if not 60 <= float(ttl_s) <= 12 * 3600:
            raise ValueError(f"ttl_s must be in [60, 43200] s; got {ttl_s!r}")
        self._key = _load_or_create_key(Path(key_path))
        self._public = self._key.public_key()
        der = self._public.public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = hashlib.sha256(der).hexdigest()[:16]
        self.db, self.ttl_s = db, float(ttl_s)

    def issue(self, username: str, role: str) -> str:
        now = int(time.time())
        claims = {"iss": LOCAL_ISSUER, "aud": LOCAL_AUDIENCE, "sub": username, "role": role,
                  "iat": now, "nbf": now, "exp": now + int(self.ttl_s)}
        return jwt.encode(claims, self._key, algorithm="ES256", headers={"kid": self.kid})

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(f"the bearer token is not a JWT: {exc}") from exc
        if header.get("alg") != "ES256" or header.get("kid") != self.kid:
            raise AuthError("the token was not signed by this gateway's key")
        try:
            claims = jwt.decode(token, self._public, algorithms=["ES256"], audience=LOCAL_AUDIENCE,
                                issuer=LOCAL_ISSUER, leeway=5, options={"require": ["exp", "iss", "aud", "sub"]})
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("the token has expired; sign in again (POST /auth/token)") from exc
        except jwt.PyJWTError as exc:
            raise AuthError(f"the token does not verify: {exc}") from exc
        user = self.db.get_user(claims["sub"])
        if user is None or not user.get("active", True):
            raise AuthError("the account is no longer active")
        return Principal(subject=user["username"], roles=frozenset({user["role"]}) if user.get("role") else
                         frozenset(), via="password")

    @staticmethod
    def is_local(token: str) -> bool:
        """Whether ``token`` claims to come from this gateway (unverified; for routing only)."""
        try:
            return jwt.decode(token, options={"verify_signature": False}).get("iss") == LOCAL_ISSUER
        except jwt.PyJWTError:
            return False


class Verifiers:
    """Which verifier a bearer token goes to: service tokens (``aooct_st_...``) to
    ``service``, the gateway's own JWTs (by their ``iss``) to ``local``, the rest to the SSO
    provider's ``oidc``; a kind with no verifier configured is refused."""

    def __init__(self, local: LocalTokens | None = None, oidc=None, service=None):
        self.local, self.oidc, self.service = local, oidc, service

    def verify(self, token: str) -> Principal:
        if is_service_token(token):
            chosen, what = self.service, "service tokens"
        elif LocalTokens.is_local(token) or self.oidc is None:
            chosen, what = self.local, "password sign-in tokens"
        else:
            chosen, what = self.oidc, "SSO tokens"
        if chosen is None:
            raise AuthError(f"this gateway does not accept {what}")
        return chosen.verify(token)
