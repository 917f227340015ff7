"""The REST gateway (FastAPI): thin routes over :mod:`api.application`.

:func:`create_app` builds the app from a metadata DB and a token verifier; ``aooct api``
(:mod:`aooct.commands.api`) serves it with uvicorn on 127.0.0.1 by default. Every route
states the permission it needs in :data:`ROUTE_PERMISSIONS` (also published in the OpenAPI
schema as ``x-permission``) — a route without one is a startup error, so no route can be
added without a policy. ``authenticated`` means any caller with a valid token. Errors are
RFC 7807 problem JSON (:mod:`api.problems`); the OpenAPI document is at ``/openapi.json``
and its browsable form at ``/docs``.
"""
from __future__ import annotations

import asyncio
import csv
import io
import logging
import shutil
from pathlib import Path
from typing import Literal

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api import application as appl
from api import artifacts as art
from api.auth import AuthError, ProviderUnavailable
from api.policy import PERMISSIONS
from api.schemas import (CaseStatus, MaskLabels, NewExport, NewLabels, NewReview, NewServiceToken, NewUser,
                         PasswordSignIn, UserChange, rle_problem)
from api.problems import Problem, install_problem_handlers, problem_response
from api.ratelimit import Limiter, MemoryLog, RateLimit, client_address
from api.runs import OrchestratorError
from api.service_tokens import ServiceTokens
from api.sessions import password_sign_in
from api.uploads import UploadLimits, new_staging, receive_body, sweep_stale_staging

__all__ = ["create_app", "ROUTE_PERMISSIONS", "AUTHENTICATED", "PUBLIC"]

log = logging.getLogger(__name__)

AUTHENTICATED = "authenticated"
PUBLIC = "public"

#: (method, path) → the permission the route needs (:data:`api.policy.PERMISSIONS`), or
#: AUTHENTICATED / PUBLIC.
ROUTE_PERMISSIONS: dict[tuple[str, str], str] = {
    ("GET", "/health"): PUBLIC,
    ("POST", "/auth/token"): PUBLIC,
    ("GET", "/me"): AUTHENTICATED,
    ("GET", "/cases"): "view_cases",
    ("GET", "/cases/{case_id}"): "view_case",
    ("GET", "/cases/{case_id}/metrics"): "view_case",
    ("GET", "/metrics"): "view_dashboards",
    ("GET", "/audit"): "view_audit",
    ("GET", "/users"): "manage_users",
    ("POST", "/users"): "manage_users",
    ("PATCH", "/users/{username}"): "manage_users",
    ("GET", "/subjects/{pseudonym}"): "look_up_subject",
    ("POST", "/exports"): "export",
    ("GET", "/models"): "view_models",
    ("POST", "/uploads"): "upload_case",
    ("GET", "/cases/{case_id}/artifacts"): "view_case",
    ("GET", "/cases/{case_id}/slabs/{slab}"): "view_case",
    ("GET", "/cases/{case_id}/report"): "view_case",
    ("GET", "/cases/{case_id}/reviews"): "view_case",
    ("POST", "/cases/{case_id}/reviews"): "review_case",
    ("GET", "/cases/{case_id}/labels"): "view_case",
    ("POST", "/cases/{case_id}/labels"): "label",
    ("POST", "/cases/{case_id}/runs"): "run_case",
    ("GET", "/runs/{run_id}"): AUTHENTICATED,      # the case's view_case, once the run names its case
    ("GET", "/service-tokens"): "manage_users",
    ("POST", "/service-tokens"): "manage_users",
    ("DELETE", "/service-tokens/{token_id}"): "manage_users",
}

_FRAMEWORK_PATHS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}

#: Largest request body the gateway reads, bytes, except uploads (``UploadLimits.max_total_bytes``).
MAX_BODY_BYTES = 1 << 20
#: Uploads validated at once; more get 429 (each validation is a worker process of its own budget).
MAX_CONCURRENT_UPLOADS = 2


def create_app(*, db, verifier, tokens=None, service_tokens=None, limiter: Limiter | None = None,
               ip_limit: RateLimit = RateLimit(1200), caller_limit: RateLimit = RateLimit(600),
               trusted_proxies: frozenset[str] = frozenset(), drop: str | None = None, drop_store=None,
               upload_limits: UploadLimits | None = None, work_root: str | Path | None = None,
               store=None, runs=None, export_store=None, registry=None,
               title: str = "aooct gateway") -> FastAPI:
    """The gateway over ``db`` (:class:`resources.metadata_db.MetadataDB`), accepting the
    bearer tokens ``verifier`` (:class:`api.auth.TokenVerifier`,
    :class:`api.local_tokens.Verifiers`, or anything with ``verify(token) -> Principal``)
    accepts. ``tokens`` (:class:`api.local_tokens.LocalTokens`) turns on password sign-in at
    ``POST /auth/token``; ``service_tokens`` (:class:`api.service_tokens.ServiceTokens`, by
    default over ``db``) is where Admins create and revoke them (the verifier checks them).
    ``limiter`` (:class:`api.ratelimit.Limiter`; default in memory) holds each client address
    to ``ip_limit`` and each authenticated caller to ``caller_limit``; ``X-Forwarded-For`` is
    believed from ``trusted_proxies`` only. Uploads (``POST /uploads``) go to the drop folder
    ``drop`` (or the object store ``drop_store``), staged under ``work_root`` (a private
    folder), within ``upload_limits``; without a drop the route answers 404. ``store``
    (:class:`resources.object_store.ObjectStore`) holds the artifacts the artifact routes serve;
    ``runs`` (:class:`api.runs.DagsterRuns`) is the orchestrator the run routes talk to;
    ``export_store`` the export location (folder, NFS or S3) of ``POST /exports``; ``registry``
    (:class:`resources.model_registry.ModelRegistry`) the models ``GET /models`` lists."""
    upload_limits = upload_limits or UploadLimits.from_env()
    uploads_busy = asyncio.Semaphore(MAX_CONCURRENT_UPLOADS)
    if work_root is not None:
        for name in sweep_stale_staging(work_root):
            log.info("removed a stale upload staging folder %s", name)
    service_tokens = service_tokens if service_tokens is not None else ServiceTokens(db)
    limiter = limiter if limiter is not None else Limiter(MemoryLog())

    def too_many(wait_s: float, who: str) -> Problem:
        return Problem(429, "rate-limited", f"too many requests from this {who}; wait {int(wait_s)} s",
                       headers={"Retry-After": str(int(wait_s))})

    app = FastAPI(title=title, version="1", description=__doc__.split("\n\n")[0])
    install_problem_handlers(app)
    app.state.store = store            # the outside systems it was made with, for tools and tests
    bearer = HTTPBearer(auto_error=False)

    @app.middleware("http")
    async def limit_body_and_rate(request: Request, call_next):
        client = client_address(request.client.host if request.client else None,
                                request.headers.get("x-forwarded-for"), trusted_proxies)
        request.state.client = client
        wait_s = limiter.hit(f"ip:{client}", ip_limit)
        if wait_s > 0:
            exc = too_many(wait_s, "address")
            return problem_response(request, exc.status, exc.kind, exc.detail, headers=exc.headers)
        size = request.headers.get("content-length")
        budget = upload_limits.max_total_bytes if request.url.path == "/uploads" else MAX_BODY_BYTES
        if size is not None and (not size.isdigit() or int(size) > budget):
            return problem_response(request, 413, "payload-too-large",
                                    f"request bodies are limited to {budget} bytes here")
        if size is None and request.method in ("POST", "PUT", "PATCH"):
            return problem_response(request, 411, "length-required",
                                    "send a Content-Length (chunked request bodies are not read here)")
        return await call_next(request)

    def context(request: Request,
                credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> appl.Context:
        challenge = {"WWW-Authenticate": 'Bearer realm="aooct"'}
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise Problem(401, "not-authenticated", "send a bearer token: Authorization: Bearer <token>",
                          headers=challenge)
        try:
            principal = verifier.verify(credentials.credentials)
        except ProviderUnavailable as exc:
            log.warning("identity provider unavailable: %s", exc)
            raise Problem(503, "identity-provider-unavailable",
                          "the identity provider's keys cannot be fetched, so no token can be checked; "
                          "try again shortly", headers={"Retry-After": "10"}) from exc
        except AuthError as exc:
            raise Problem(401, "invalid-token", str(exc), headers=challenge) from exc
        wait_s = limiter.hit(f"sub:{principal.via}:{principal.subject}", caller_limit)
        if wait_s > 0:
            raise too_many(wait_s, "caller")
        return appl.Context(principal=principal, db=db, client=request.state.client)

    def route(method: str, path: str, **kwargs):
        # Register a route under its ROUTE_PERMISSIONS entry: authenticate and ask the policy
        # for that permission before the body is read or validated (a route-level dependency
        # runs first; the endpoint's own Depends(context) reuses the same, cached, context) —
        # a caller without it gets 403 (audited), never a validation answer.
        permission = ROUTE_PERMISSIONS[(method, path)]
        dependencies = []
        if permission != PUBLIC:
            def authorized(request: Request, ctx: appl.Context = Depends(context)) -> None:
                if permission != AUTHENTICATED:
                    appl.authorize(ctx, permission, case_id=request.path_params.get("case_id"))
            dependencies.append(Depends(authorized))
        return app.api_route(path, methods=[method], dependencies=dependencies,
                             openapi_extra={"x-permission": permission}, **kwargs)

    @route("GET", "/health")
    def health() -> dict:
        """Liveness: the gateway answers (no authentication)."""
        return {"status": "ok"}

    @route("POST", "/auth/token")
    def token(body: PasswordSignIn, request: Request) -> dict:
        """Password sign-in (embedded default): a short-lived bearer token for the gateway."""
        if tokens is None:
            raise Problem(404, "password-sign-in-off",
                          "this gateway takes tokens from the SSO provider only; sign in there")
        client = request.state.client
        result = password_sign_in(db, body.username, body.password, client=client, via="gateway")
        if result.wait_s > 0:
            raise Problem(429, "sign-in-locked", "too many failed sign-ins; try again later",
                          headers={"Retry-After": str(int(result.wait_s + 0.999))})
        if not result.ok:
            raise Problem(401, "sign-in-failed", "username or password is incorrect")
        db.audit(result.account["username"], "sign_in", detail={"via": "gateway", "client": client})
        return {"access_token": tokens.issue(result.account["username"], result.account["role"]),
                "token_type": "bearer", "expires_in": int(tokens.ttl_s)}

    @route("GET", "/me")
    def me(ctx: appl.Context = Depends(context)) -> dict:
        """Who the token says you are, and what you may do."""
        return appl.whoami(ctx)

    @route("GET", "/cases")
    def cases(ctx: appl.Context = Depends(context), status: CaseStatus | None = None,
              eye: Literal["OD", "OS"] | None = None, qc_status: Literal["pass", "warn", "fail"] | None = None,
              limit: int = Query(50, ge=1, le=appl.MAX_PAGE), offset: int = Query(0, ge=0)) -> dict:
        """Cases with status and QC, filtered and paged (ordered by case id)."""
        return appl.list_cases(ctx, status=status, eye=eye, qc_status=qc_status, limit=limit, offset=offset)

    @route("GET", "/cases/{case_id}")
    def case(case_id: str, ctx: appl.Context = Depends(context)) -> dict:
        """One case: its record, QC checks, runs and artifacts."""
        return appl.get_case(ctx, case_id)

    @route("GET", "/cases/{case_id}/metrics")
    def case_metrics(case_id: str, ctx: appl.Context = Depends(context),
                     format: Literal["json", "csv"] = "json"):
        """The case's metrics as JSON rows or CSV."""
        rows = appl.case_metrics(ctx, case_id)
        return _csv(rows, f"{case_id}-metrics.csv") if format == "csv" else rows

    @route("GET", "/metrics")
    def metrics(ctx: appl.Context = Depends(context),
                limit: int = Query(appl.MAX_PAGE, ge=1, le=appl.MAX_PAGE), offset: int = Query(0, ge=0)) -> dict:
        """Metrics rows of every case, paged."""
        return appl.cohort_metrics(ctx, limit=limit, offset=offset)

    @route("GET", "/audit")
    def audit(ctx: appl.Context = Depends(context), actor: str | None = None,
              action: str | None = None, case_id: str | None = None,
              limit: int = Query(200, ge=1, le=appl.MAX_PAGE)) -> list[dict]:
        """Audit entries, newest first."""
        return appl.audit_log(ctx, actor=actor, action=action, case_id=case_id, limit=limit)

    @route("GET", "/users")
    def users(ctx: appl.Context = Depends(context)) -> list[dict]:
        """Users and roles (no password hashes)."""
        return appl.list_users(ctx)

    @route("POST", "/uploads", status_code=201)
    async def upload(request: Request, ctx: appl.Context = Depends(context),
                     name: str = Query("upload.zip", max_length=128, description="the zip's file name")) -> dict:
        """A case zip (``Content-Type: application/zip``, streamed): validated in a limited
        worker process, then queued for ingest; nothing partial ever reaches the drop."""
        if drop is None and drop_store is None:
            raise Problem(404, "uploads-off", "this gateway has no drop location configured")
        if uploads_busy.locked():
            raise Problem(429, "uploads-busy", f"{MAX_CONCURRENT_UPLOADS} uploads are being validated; "
                          "try again shortly", headers={"Retry-After": "30"})
        async with uploads_busy:
            work = new_staging(work_root)
            try:
                try:
                    await receive_body(request.stream(), work / "upload.zip",
                                       declared_bytes=int(request.headers["content-length"]))
                except ValueError as exc:
                    raise Problem(400, "incomplete-upload", str(exc)) from exc
                made = await run_in_threadpool(appl.ingest_upload, ctx, work / "upload.zip", name=name,
                                               work_dir=work, limits=upload_limits, drop=drop, drop_store=drop_store)
            finally:
                await run_in_threadpool(shutil.rmtree, work, True)
        # "queued" only when something will take it from the drop (issue 22): the orchestrator's
        # sensor daemon, asked over its GraphQL API.
        try:
            made["queued"] = runs is not None and await run_in_threadpool(runs.sensor_daemon_running)
        except OrchestratorError:
            made["queued"] = False
        if not made["queued"]:
            made["waiting"] = ("the case is in the drop, but no Dagster daemon is known to run its sensor"
                               + ("" if runs is not None else " (this gateway has no AOOCT_DAGSTER_URL)")
                               + "; start dagster-daemon, or run aooct process where the drop is")
        return made

    def artifact(call, *args, **kwargs):
        if store is None:
            raise Problem(404, "artifacts-off", "this gateway has no object store configured")
        try:
            return call(store, *args, **kwargs)
        except art.ArtifactMissing as exc:
            raise Problem(404, "not-found", str(exc)) from exc
        except art.ArtifactTooLarge as exc:
            raise Problem(413, "artifact-too-large", str(exc)) from exc
        except ValueError as exc:
            raise Problem(400, "bad-artifact-request", str(exc)) from exc

    @route("GET", "/cases/{case_id}/artifacts")
    def artifacts(case_id: str, ctx: appl.Context = Depends(context)):
        """The case's stored artifacts: kind, name, key and size."""
        appl.require_case(ctx, case_id)             # 404 for an unknown case, as everywhere
        return artifact(art.list_artifacts, case_id)

    @route("GET", "/cases/{case_id}/slabs/{slab}")
    def slab(case_id: str, slab: str, ctx: appl.Context = Depends(context),
             format: Literal["png", "npy"] = "png", row: int = Query(0, ge=0), col: int = Query(0, ge=0),
             size: int = Query(512, ge=1, le=art.MAX_TILE_PX)):
        """An en face slab: a PNG tile (``row``, ``col``, ``size``) or the whole array as ``.npy``."""
        appl.require_case(ctx, case_id)
        if format == "npy":
            return Response(artifact(art.slab_npy, case_id, slab), media_type="application/octet-stream",
                            headers={"Content-Disposition": f'attachment; filename="{case_id}-{slab}.npy"'})
        return Response(artifact(art.slab_png_tile, case_id, slab, row=row, col=col, size_px=size),
                        media_type="image/png")

    @route("GET", "/cases/{case_id}/report")
    def report(case_id: str, ctx: appl.Context = Depends(context)):
        """The case report (HTML, as a download: it is never rendered in the gateway's origin)."""
        appl.require_case(ctx, case_id)
        return Response(artifact(art.report_html, case_id), media_type="text/html",
                        headers={"Content-Disposition": f'attachment; filename="{case_id}-report.html"',
                                 "Content-Security-Policy": "sandbox", "X-Content-Type-Options": "nosniff"})

    @route("GET", "/cases/{case_id}/reviews")
    def reviews(case_id: str, ctx: appl.Context = Depends(context)):
        """The case's review decisions."""
        return appl.list_reviews(ctx, case_id)

    @route("POST", "/cases/{case_id}/reviews", status_code=201)
    def review(case_id: str, body: NewReview,
               ctx: appl.Context = Depends(context)) -> dict:
        """Approve or reject the case's latest finished run (409 while it is processing, or an
        approval of a run that did not pass its checks)."""
        return appl.add_review(ctx, case_id, decision=body.decision, comment=body.comment)

    @route("GET", "/cases/{case_id}/labels")
    def labels(case_id: str, ctx: appl.Context = Depends(context),
               structure: Literal["cones", "rpe", "capillaries", "nfl"] | None = None,
               annotator: str | None = Query(None, max_length=128), latest_only: bool = False):
        """Label versions of the case (every version of every annotator unless ``latest_only``)."""
        return appl.list_labels(ctx, case_id, structure=structure, annotator=annotator, latest_only=latest_only)

    @route("POST", "/cases/{case_id}/labels", status_code=201)
    def label(case_id: str, body: NewLabels,
              ctx: appl.Context = Depends(context)) -> dict:
        """Save a new label version (points for cones / RPE, a run-length mask for vessels)."""
        if isinstance(body.payload, MaskLabels):
            problem = rle_problem(body.payload.rle, body.payload.shape)
            if problem:
                raise Problem(422, "bad-labels", problem)
        return appl.add_label(ctx, case_id, structure=body.structure, payload=body.payload.model_dump())

    def orchestrator():
        if runs is None:
            raise Problem(404, "runs-off", "this gateway has no orchestrator configured (AOOCT_DAGSTER_URL)")
        return runs

    @route("POST", "/cases/{case_id}/runs", status_code=202)
    def launch(case_id: str, ctx: appl.Context = Depends(context),
               idempotency_key: str = Header(min_length=1, max_length=128,
                                             description="the same key returns the same run, never a second one")):
        """Start the case's pipeline run in the orchestrator (``created`` false: this key's run)."""
        return appl.launch_run(ctx, orchestrator(), case_id, idempotency_key=idempotency_key)

    @route("GET", "/runs/{run_id}")
    def run(run_id: str, ctx: appl.Context = Depends(context)) -> dict:
        """A run's live status and step events, from the orchestrator."""
        return appl.run_status(ctx, orchestrator(), run_id)

    @route("POST", "/users", status_code=201)
    def user_create(body: NewUser, ctx: appl.Context = Depends(context)) -> dict:
        """Create a user (bcrypt hash stored, the password never)."""
        return appl.create_user(ctx, username=body.username, name=body.name, email=body.email,
                                password=body.password, role=body.role)

    @route("PATCH", "/users/{username}")
    def user_update(username: str, body: UserChange,
                    ctx: appl.Context = Depends(context)) -> dict:
        """Change a user's role or deactivate them (their sessions and tokens stop at once)."""
        return appl.update_user(ctx, username, role=body.role, active=body.active)

    @route("GET", "/subjects/{pseudonym}")
    def subject(pseudonym: str, ctx: appl.Context = Depends(context)) -> dict:
        """The subject_id a pseudonym stands for (Admin only, audited)."""
        return appl.look_up_subject(ctx, pseudonym)

    @route("POST", "/exports", status_code=201)
    def export(body: NewExport, ctx: appl.Context = Depends(context)) -> dict:
        """Write the metrics to the export location (a new, never overwritten, prefix per export;
        rejected cases left out of an all-cases export unless ``include_rejected``)."""
        if export_store is None:
            raise Problem(404, "exports-off", "this gateway has no export location configured (AOOCT_EXPORT)")
        return appl.export_metrics(ctx, export_store, fmt=body.format, case_id=body.case_id,
                                   include_rejected=body.include_rejected)

    @route("GET", "/models")
    def models(ctx: appl.Context = Depends(context)) -> list[dict]:
        """Registered models: versions, metrics, aliases, model card."""
        if registry is None:
            raise Problem(404, "models-off", "this gateway has no model registry configured")
        return appl.list_models(ctx, registry)

    @route("GET", "/service-tokens")
    def service_tokens_list(ctx: appl.Context = Depends(context)) -> list[dict]:
        """Service tokens: names, scopes, creator, last use, revocation (never the tokens)."""
        return appl.list_service_tokens(ctx)

    @route("POST", "/service-tokens", status_code=201)
    def service_tokens_create(body: NewServiceToken,
                              ctx: appl.Context = Depends(context)) -> dict:
        """A new scoped service token for a scanner or script; the token is in this answer only."""
        return appl.create_service_token(ctx, service_tokens, name=body.name, scopes=body.scopes)

    @route("DELETE", "/service-tokens/{token_id}")
    def service_tokens_revoke(token_id: int,
                              ctx: appl.Context = Depends(context)) -> dict:
        """Revoke a service token at once."""
        return appl.revoke_service_token(ctx, token_id)

    _check_routes(app)
    return app


def _csv(rows: list[dict], filename: str) -> Response:
    buf = io.StringIO()
    fields = sorted({k for r in rows for k in r})
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in fields})
    return Response(buf.getvalue(), media_type="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _check_routes(app: FastAPI) -> None:
    """Every API route has a policy entry naming a real permission, and every entry a route."""
    seen = set()
    for route in app.routes:
        if not isinstance(route, APIRoute) or route.path in _FRAMEWORK_PATHS:
            continue
        for method in route.methods - {"HEAD", "OPTIONS"}:
            key = (method, route.path)
            perm = ROUTE_PERMISSIONS.get(key)
            if perm is None:
                raise RuntimeError(f"route {method} {route.path} has no entry in ROUTE_PERMISSIONS")
            if perm not in PERMISSIONS and perm not in (AUTHENTICATED, PUBLIC):
                raise RuntimeError(f"route {method} {route.path} needs unknown permission {perm!r}")
            seen.add(key)
    missing = set(ROUTE_PERMISSIONS) - seen
    if missing:
        raise RuntimeError(f"ROUTE_PERMISSIONS lists routes the app does not have: {sorted(missing)}")
