"""A real JWKS endpoint on loopback for the gateway's token tests: keys made with
``cryptography``, served over HTTP by a thread, rotated on demand; tokens minted with PyJWT."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ISSUER = "http://127.0.0.1/test-idp"
AUDIENCE = "aooct-gateway"


class SigningKey:
    def __init__(self, kid: str, alg: str = "RS256"):
        self.kid, self.alg = kid, alg
        self.private = (rsa.generate_private_key(public_exponent=65537, key_size=2048) if alg.startswith("RS")
                        else ec.generate_private_key(ec.SECP256R1()))

    def jwk(self) -> dict:
        algo = jwt.algorithms.RSAAlgorithm if self.alg.startswith("RS") else jwt.algorithms.ECAlgorithm
        d = json.loads(algo.to_jwk(self.private.public_key()))
        return {**d, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo)

    def token(self, *, roles=("Researcher",), sub="alice", email="alice@lab.example", exp_in=300, nbf_in=None,
              iss=ISSUER, aud=AUDIENCE, kid=None, extra=None) -> str:
        now = int(time.time())
        claims = {"sub": sub, "email": email, "iss": iss, "aud": aud, "iat": now, "exp": now + exp_in,
                  "realm_access": {"roles": list(roles)}}
        if nbf_in is not None:
            claims["nbf"] = now + nbf_in
        claims.update(extra or {})
        return jwt.encode(claims, self.private, algorithm=self.alg, headers={"kid": kid or self.kid})


class JWKSServer:
    """Serves ``{"keys": [...]}`` of :attr:`keys` at ``/jwks``; counts the fetches."""

    def __init__(self, keys):
        self.keys = list(keys)
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server API)
                outer.fetches += 1
                body = json.dumps({"keys": [k.jwk() for k in outer.keys]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
