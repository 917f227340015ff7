"""The gateway's application layer: plain functions that decide, fetch and audit.

Each function takes a :class:`Context` (who is calling, from where, with which metadata DB)
and asks the policy (:mod:`api.policy`) first: a caller without the permission gets a
``403`` :class:`~api.problems.Problem` and the denial is written to the audit log (who,
which permission, which case, from where; no patient identifiers — cases carry
pseudonymous subject ids). The FastAPI routes (:mod:`api.gateway`) only parse the request
and call these, so the same decision holds for every client of the gateway.
"""
from __future__ import annotations

import re

from dataclasses import dataclass
from pathlib import Path

from api.policy import PERMISSIONS, Principal
from api.problems import Problem

__all__ = ["Context", "MAX_PAGE", "authorize", "list_cases", "get_case", "case_metrics",
           "cohort_metrics", "audit_log", "list_users", "whoami", "list_service_tokens",
           "create_service_token", "revoke_service_token", "ingest_upload", "require_case",
           "list_reviews", "add_review", "list_labels", "add_label", "launch_run", "run_status",
           "create_user", "update_user", "look_up_subject", "export_metrics", "list_models"]

#: Largest page of a listing (cases, audit entries, metrics rows).
MAX_PAGE = 500


@dataclass(frozen=True)
class Context:
    """Who calls (``principal``), from where (``client``: the peer address) and the
    metadata DB (:class:`resources.metadata_db.MetadataDB`) the answer comes from."""

    principal: Principal
    db: object
    client: str | None = None
    #: The front end the call came through, for the audit log (the review app passes its own).
    channel: str = "gateway"


def authorize(ctx: Context, permission: str, *, case_id: str | None = None) -> None:
    """Return when the caller may ``permission``; else audit the denial and raise 403."""
    if ctx.principal.may(permission):
        return
    ctx.db.audit(ctx.principal.subject, f"denied:{permission}", case_id=case_id,
                 detail={"via": ctx.principal.via, "client": ctx.client,
                         "roles": sorted(ctx.principal.roles)}, allowed=False)
    if ctx.principal.scopes is not None:
        scopes = ", ".join(sorted(ctx.principal.scopes))
        raise Problem(403, "forbidden", f"{permission!r} is not in this service token's scopes ({scopes}); "
                                        "an Admin can make one that has it")
    have = ", ".join(sorted(ctx.principal.roles)) or "no platform role"
    raise Problem(403, "forbidden", f"{permission!r} is not granted to {have}; ask an Admin for a role "
                                    "that has it")


def _page(limit: int, offset: int) -> tuple[int, int]:
    if not 1 <= int(limit) <= MAX_PAGE:
        raise Problem(400, "bad-page", f"limit must be in [1, {MAX_PAGE}]; got {limit}")
    if int(offset) < 0:
        raise Problem(400, "bad-page", f"offset must be >= 0; got {offset}")
    return int(limit), int(offset)


def whoami(ctx: Context) -> dict:
    """The caller as the gateway sees it (any authenticated caller)."""
    p = ctx.principal
    return {"subject": p.subject, "roles": sorted(p.roles), "via": p.via,
            "permissions": sorted(k for k in PERMISSIONS if p.may(k))}


def list_cases(ctx: Context, *, status: str | None = None, eye: str | None = None,
               qc_status: str | None = None, limit: int = 50, offset: int = 0) -> dict:
    """One page of cases (ordered by case id) with the total that match the filters."""
    authorize(ctx, "view_cases")
    limit, offset = _page(limit, offset)
    filters = {"status": status, "eye": eye, "qc_status": qc_status}
    try:
        items = ctx.db.list_cases(**filters, limit=limit, offset=offset)
        total = ctx.db.count_cases(**filters)
    except ValueError as exc:       # an unknown status / QC level, named by the DB layer
        raise Problem(400, "bad-filter", str(exc)) from exc
    return {"items": items, "total": total, "limit": limit, "offset": offset}


def require_case(ctx: Context, case_id: str) -> dict:
    """The case record when the caller may view it (403) and it exists (404)."""
    authorize(ctx, "view_case", case_id=case_id)
    return _case_or_404(ctx, case_id)


def _case_or_404(ctx: Context, case_id: str) -> dict:
    case = ctx.db.get_case(case_id)
    if case is None:
        raise Problem(404, "not-found", f"no case {case_id!r}; list the cases with GET /cases")
    return case


def get_case(ctx: Context, case_id: str) -> dict:
    """A case with its QC checks, runs and stored artifacts."""
    case = require_case(ctx, case_id)
    return {"case": case, "qc": ctx.db.get_qc(case_id), "runs": ctx.db.list_runs(case_id),
            "artifacts": ctx.db.list_artifacts(case_id)}


def case_metrics(ctx: Context, case_id: str) -> list[dict]:
    """The metrics of one case (value, CI, unit, model version per row)."""
    require_case(ctx, case_id)
    return ctx.db.get_metrics(case_id)


def cohort_metrics(ctx: Context, *, limit: int = MAX_PAGE, offset: int = 0) -> dict:
    """Metrics rows of every case, paged (for dashboards and outside analysis)."""
    authorize(ctx, "view_dashboards")
    limit, offset = _page(limit, offset)
    return {"items": ctx.db.get_metrics(limit=limit, offset=offset), "total": ctx.db.count_metrics(),
            "limit": limit, "offset": offset}


def audit_log(ctx: Context, *, actor: str | None = None, action: str | None = None,
              case_id: str | None = None, limit: int = 200) -> list[dict]:
    """The newest audit entries that match, newest first."""
    authorize(ctx, "view_audit", case_id=case_id)
    limit, _ = _page(limit, 0)
    return ctx.db.list_audit(actor=actor, action=action, case_id=case_id, limit=limit)


def list_users(ctx: Context) -> list[dict]:
    """Users and their roles; password hashes are never returned."""
    authorize(ctx, "manage_users")
    return [{k: v for k, v in u.items() if k != "password_hash"} for u in ctx.db.list_users()]


def list_service_tokens(ctx: Context) -> list[dict]:
    """Service tokens (names, scopes, who made them, last use, revocation); never the tokens."""
    authorize(ctx, "manage_users")
    return ctx.db.list_service_tokens()


def create_service_token(ctx: Context, tokens, *, name: str, scopes: list[str]) -> dict:
    """A new service token, shown once; audited (without the token)."""
    authorize(ctx, "manage_users")
    try:
        token_id, token = tokens.create(name, scopes, created_by=ctx.principal.subject)
    except ValueError as exc:
        raise Problem(400, "bad-service-token", str(exc)) from exc
    ctx.db.audit(ctx.principal.subject, "create_service_token",
                 detail={"id": token_id, "name": name, "scopes": sorted(scopes), "client": ctx.client})
    return {"id": token_id, "name": name, "scopes": sorted(set(scopes)), "token": token,
            "note": "store the token now: only its hash is kept, it cannot be shown again"}


def revoke_service_token(ctx: Context, token_id: int) -> dict:
    """End a service token at once; audited."""
    authorize(ctx, "manage_users")
    if not ctx.db.revoke_service_token(token_id, by=ctx.principal.subject):
        raise Problem(404, "not-found", f"no live service token {token_id}; list them with GET /service-tokens")
    ctx.db.audit(ctx.principal.subject, "revoke_service_token", detail={"id": token_id, "client": ctx.client})
    return {"id": token_id, "revoked": True}


def _shown(path, work_dir: Path, name: str) -> str:
    # A file as the uploader knows it: inside their zip, never the server's temporary folder.
    p = Path(path)
    if p.is_relative_to(work_dir / "x"):
        return f"{name}:{p.relative_to(work_dir / 'x')}"
    return name if p.is_relative_to(work_dir) else p.name


def ingest_upload(ctx: Context, zip_path: Path, *, name: str, work_dir: Path, limits, drop: str,
                  drop_store=None) -> dict:
    """Validate an uploaded case zip in the limited worker process and drop it for ingest.

    Nothing reaches the drop unless the whole case validates (the readers the pipeline uses,
    zip-bomb and zip-slip checks first; :mod:`api.upload_worker`); it lands there atomically
    (:func:`api.uploads.drop_for_ingest`). A rejected upload is a 422 problem naming the file
    inside the zip and the problem; both outcomes are audited.
    """
    from aooct_core.io.errors import InputError
    from api.upload_worker import validate_in_worker
    from api.uploads import drop_for_ingest

    authorize(ctx, "upload_case")
    try:
        case = validate_in_worker(zip_path, kind="zip", work_dir=work_dir, limits=limits)
        where = drop_for_ingest(case, "" if drop_store is not None else drop, store=drop_store)
    except InputError as exc:
        ctx.db.audit(ctx.principal.subject, "upload_rejected",
                     detail={"source": name, "problems": exc.problems, "via": ctx.channel, "client": ctx.client})
        raise Problem(422, "invalid-upload", f"{_shown(exc.path, work_dir, name)}: {exc.problem}") from exc
    ctx.db.audit(ctx.principal.subject, "upload", case_id=case.case_id,
                 detail={"source": name, "dropped_at": where, "n_volumes": case.n_volumes,
                         "volume_shape_px": list(case.volume_shape_px), "bytes": case.total_bytes,
                         "via": ctx.channel, "client": ctx.client})
    return {"case_id": case.case_id, "n_volumes": case.n_volumes,
            "volume_shape_px": list(case.volume_shape_px), "bytes": case.total_bytes, "queued": True}


def list_reviews(ctx: Context, case_id: str) -> list[dict]:
    """The case's review decisions, oldest first."""
    require_case(ctx, case_id)
    return ctx.db.get_reviews(case_id)


def add_review(ctx: Context, case_id: str, *, decision: str, comment: str) -> dict:
    """Approve or reject the case's latest finished run (:mod:`api.decisions`); audited.
    409 while it is processing, or when approval is asked of a run that did not pass."""
    from api.decisions import DecisionRefused, record_decision

    authorize(ctx, "review_case", case_id=case_id)
    _case_or_404(ctx, case_id)
    try:
        made = record_decision(ctx.db, case_id, reviewer=ctx.principal.subject, decision=decision,
                               comment=comment)
    except DecisionRefused as exc:
        raise Problem(409, "decision-refused", str(exc)) from exc
    ctx.db.audit(ctx.principal.subject, "review", case_id=case_id,
                 detail={"decision": decision, "review_id": made["id"], "run_id": made["run_id"],
                         "via": ctx.channel, "client": ctx.client})
    return made


def list_labels(ctx: Context, case_id: str, *, structure: str | None = None, annotator: str | None = None,
                latest_only: bool = False) -> list[dict]:
    """Label versions of a case (every annotator's, each version kept)."""
    require_case(ctx, case_id)
    return ctx.db.get_labels(case_id, structure=structure, annotator=annotator, latest_only=latest_only)


def add_label(ctx: Context, case_id: str, *, structure: str, payload: dict) -> dict:
    """A new label version of the caller's (never overwriting one); audited."""
    authorize(ctx, "label", case_id=case_id)
    _case_or_404(ctx, case_id)
    version = ctx.db.add_label(case_id, structure, ctx.principal.subject, payload)
    ctx.db.audit(ctx.principal.subject, "save_label", case_id=case_id,
                 detail={"structure": structure, "version": version, "via": ctx.channel, "client": ctx.client})
    return {"case_id": case_id, "structure": structure, "annotator": ctx.principal.subject, "version": version}


def launch_run(ctx: Context, runs, case_id: str, *, idempotency_key: str) -> dict:
    """Start the case's pipeline run through the orchestrator, once per idempotency key; audited."""
    from api.runs import IdempotencyConflict, OrchestratorError

    authorize(ctx, "run_case", case_id=case_id)
    _case_or_404(ctx, case_id)
    try:
        run = runs.launch(case_id, tag_key=runs.key_for(ctx.principal.subject, idempotency_key))
    except IdempotencyConflict as exc:
        raise Problem(409, "idempotency-conflict", str(exc)) from exc
    except OrchestratorError as exc:
        raise Problem(502, "orchestrator-error", str(exc)) from exc
    if run["created"]:
        ctx.db.audit(ctx.principal.subject, "launch_run", case_id=case_id,
                     detail={"run_id": run["run_id"], "via": ctx.channel, "client": ctx.client})
    return {**run, "case_id": case_id}


def run_status(ctx: Context, runs, run_id: str) -> dict:
    """A run's status and step events from the orchestrator (the case's view permission)."""
    from api.runs import OrchestratorError

    try:
        run = runs.status(run_id)
    except OrchestratorError as exc:
        raise Problem(502, "orchestrator-error", str(exc)) from exc
    if run is None or not run.get("case_id"):
        authorize(ctx, "view_cases")
        raise Problem(404, "not-found", f"the orchestrator has no case run {run_id!r}")
    authorize(ctx, "view_case", case_id=run["case_id"])
    return run


#: Shortest password the gateway (and the review app's admin page) accepts.
MIN_PASSWORD_CHARS = 8
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")


def create_user(ctx: Context, *, username: str, name: str, email: str, password: str, role: str) -> dict:
    """A new user with a bcrypt hash of ``password``; audited (without the password)."""
    from api.sessions import hash_password

    authorize(ctx, "manage_users")
    username, email = username.strip(), email.strip()
    if not username:
        raise Problem(400, "bad-user", "a user needs a username")
    if len(password) < MIN_PASSWORD_CHARS:
        raise Problem(400, "weak-password", f"a password needs at least {MIN_PASSWORD_CHARS} characters")
    # Single sign-on finds the account by e-mail: it must be there, look like one, be unique.
    if not _EMAIL.fullmatch(email):
        raise Problem(400, "bad-email", f"{email or 'an empty e-mail'!r} is not an e-mail address; single "
                                        "sign-on matches users by e-mail, so each user needs theirs")
    if ctx.db.get_user(username):
        raise Problem(409, "user-exists",
                      f"user {username!r} already exists; change the role with PATCH /users/{username}")
    taken = [u["username"] for u in ctx.db.list_users() if (u.get("email") or "").lower() == email.lower()]
    if taken:
        raise Problem(409, "email-taken", f"{email!r} is already the e-mail of user {taken[0]!r}; single "
                                          "sign-on could not tell the two apart")
    ctx.db.create_user(username, name=name or username, email=email, password_hash=hash_password(password), role=role)
    ctx.db.audit(ctx.principal.subject, "create_user", detail={"username": username, "role": role, "via": ctx.channel})
    return {"username": username, "role": role, "active": True}


def update_user(ctx: Context, username: str, *, role: str | None, active: bool | None) -> dict:
    """Change a user's role and/or deactivate them; either ends their open sessions at once."""
    authorize(ctx, "manage_users")
    user = ctx.db.get_user(username)
    if user is None:
        raise Problem(404, "not-found", f"no user {username!r}; list them with GET /users")
    if username == ctx.principal.subject and (active is False or (role is not None and role != "Admin")):
        raise Problem(409, "self-lockout", "an Admin cannot deactivate or demote themselves; ask another Admin")
    losing_admin = user["role"] == "Admin" and bool(user["active"]) and (
        active is False or (role is not None and role != "Admin"))
    if losing_admin and not [u for u in ctx.db.list_users()
                             if u["role"] == "Admin" and u["active"] and u["username"] != username]:
        raise Problem(409, "last-admin", f"{username!r} is the last active Admin; make another Admin first")
    if role is not None and role != user["role"]:
        ctx.db.set_role(username, role)
        ctx.db.audit(ctx.principal.subject, "set_role", detail={"username": username, "role": role, "via": ctx.channel})
    if active is not None and bool(active) != bool(user["active"]):
        ctx.db.set_active(username, bool(active))
        ctx.db.audit(ctx.principal.subject, "set_active",
                     detail={"username": username, "active": bool(active), "via": ctx.channel})
    after = ctx.db.get_user(username)
    return {"username": username, "role": after["role"], "active": bool(after["active"])}


def look_up_subject(ctx: Context, pseudonym: str) -> dict:
    """The subject_id a pseudonym stands for (Admin only); every look-up is audited."""
    authorize(ctx, "look_up_subject")
    original = ctx.db.subject_for(pseudonym)
    ctx.db.audit(ctx.principal.subject, "look_up_subject",
                 detail={"pseudonym": pseudonym, "found": original is not None, "via": ctx.channel})
    if original is None:
        raise Problem(404, "not-found", f"no subject is mapped to {pseudonym!r}")
    return {"pseudonym": pseudonym, "subject_id": original}


#: Most metric rows one export writes.
MAX_EXPORT_ROWS = 2_000_000


def export_metrics(ctx: Context, export_store, *, fmt: str, case_id: str | None = None,
                   include_rejected: bool = False) -> dict:
    """Write the metrics (of one case, or all) as CSV or Parquet to the export location; audited.
    All cases' export leaves rejected cases out unless ``include_rejected``; one case named is
    exported whatever its status."""
    import polars as pl

    from api.exports import LEFT_OUT, write_table

    authorize(ctx, "export", case_id=case_id)
    if case_id is not None:
        _case_or_404(ctx, case_id)
    total = ctx.db.count_metrics(case_id)
    if total > MAX_EXPORT_ROWS:
        raise Problem(413, "export-too-large", f"{total} metric rows, over the {MAX_EXPORT_ROWS}-row budget of "
                      "one export; export case by case")
    rows = ctx.db.get_metrics(case_id)
    left_out = set()
    if case_id is None and not include_rejected:
        for status in LEFT_OUT:
            n = ctx.db.count_cases(status=status)
            left_out |= {c["case_id"] for c in ctx.db.list_cases(status=status, limit=max(n, 1))}
        rows = [r for r in rows if r["case_id"] not in left_out]
    uri = write_table(pl.DataFrame(rows, infer_schema_length=None), export_store, actor=ctx.principal.subject,
                      fmt=fmt)
    ctx.db.audit(ctx.principal.subject, "export", case_id=case_id,
                 detail={"format": fmt, "rows": len(rows), "uri": uri, "via": ctx.channel,
                         "cases_left_out": len(left_out)})
    return {"uri": uri, "rows": len(rows), "format": fmt, "cases_left_out": sorted(left_out)}


def list_models(ctx: Context, registry) -> list[dict]:
    """Registered models: versions with their metrics, aliases and the latest model card."""
    authorize(ctx, "view_models")
    return registry.list_models()
