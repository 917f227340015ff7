"""``aooct api``: the REST gateway (FastAPI on uvicorn) over the platform's metadata DB.

Settings come from the environment (``AOOCT_API_*``, ``AOOCT_OIDC_*``; see
:mod:`api.settings`); the metadata DB and home are the platform's (``AOOCT_DB_URL``,
``AOOCT_HOME``). On embedded defaults it listens on 127.0.0.1:8600 and signs users of the DB
in with their passwords (``POST /auth/token``); the OpenAPI document is at ``/docs``.
"""
from __future__ import annotations

import typer

from aooct.errors import CliError


def register(app: typer.Typer) -> None:
    @app.command("api")
    def api(
        port: int = typer.Option(None, help="Port (default AOOCT_API_PORT or 8600)."),
    ) -> None:
        """Serve the REST gateway (cases, metrics, audit, users; bearer tokens)."""
        import os

        import uvicorn

        from api.auth import TokenVerifier
        from api.gateway import create_app
        from api.local_tokens import LocalTokens, Verifiers
        from api.ratelimit import Limiter, MemoryLog, RateLimit, RedisLog
        from api.runs import DagsterRuns
        from api.service_tokens import ServiceTokens
        from api.settings import GatewaySettings
        from resources.config import load_config
        from resources.metadata_db import SqlMetadataDB
        from resources.model_registry import ModelRegistry
        from resources.object_store import make_object_store

        env = dict(os.environ)
        if port is not None:
            env["AOOCT_API_PORT"] = str(port)
        try:
            settings = GatewaySettings.from_env(env)
            cfg = load_config()
        except ValueError as exc:
            raise CliError(str(exc)) from exc
        if settings.oidc is None and not settings.password_sign_in:
            raise CliError("AOOCT_API_PASSWORD_SIGN_IN=0 without AOOCT_OIDC_ISSUER leaves no way to sign in; "
                           "set one of them")
        db = SqlMetadataDB(cfg.db_url)
        tokens = LocalTokens(cfg.home / "api" / "token_key.pem", db=db, ttl_s=settings.token_ttl_s)
        oidc = TokenVerifier(settings.oidc) if settings.oidc else None
        service = ServiceTokens(db)
        verifier = Verifiers(tokens if settings.password_sign_in else None, oidc, service)
        counter = RedisLog(settings.redis_url) if settings.redis_url else MemoryLog()
        app_ = create_app(db=db, verifier=verifier, tokens=tokens if settings.password_sign_in else None,
                          service_tokens=service, limiter=Limiter(counter),
                          ip_limit=RateLimit(settings.rate_ip_per_min), caller_limit=RateLimit(settings.rate_per_min),
                          trusted_proxies=settings.trusted_proxies,
                          drop=None if cfg.drop.startswith("s3://") else cfg.drop,
                          drop_store=make_object_store(cfg.drop, **cfg.store_options())
                          if cfg.drop.startswith("s3://") else None,
                          work_root=cfg.home / "api" / "uploads",
                          store=make_object_store(cfg.object_store, **cfg.store_options()),
                          runs=DagsterRuns(settings.dagster_url),
                          export_store=make_object_store(cfg.export, **cfg.store_options()),
                          registry=ModelRegistry(cfg.mlflow_tracking_uri, cache_dir=cfg.home / "api" / "models"))
        sso = f"SSO tokens from {settings.oidc.issuer}" if settings.oidc else "no SSO provider"
        print(f"aooct api: http://{settings.host}:{settings.port} (docs at /docs); "
              f"password sign-in {'on' if settings.password_sign_in else 'off'}, {sso}; Ctrl-C stops", flush=True)
        try:
            uvicorn.run(app_, host=settings.host, port=settings.port, log_level="warning",
                        limit_concurrency=200, timeout_keep_alive=5)
        except OSError as exc:
            raise CliError(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}") from exc
        finally:
            db.close()
