"""Errors as RFC 7807 problem details (``application/problem+json``).

Every error the gateway returns — refused tokens, denied actions, unknown cases, bad query
parameters, and anything unexpected — has the same shape: ``type`` (a stable URI naming the
kind of problem), ``title``, ``status``, ``detail`` (what went wrong and how to fix it) and
``instance`` (the request path). An unexpected exception is logged with its traceback and
answered with a 500 problem that names no internals.
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = ["Problem", "install_problem_handlers", "problem_response", "PROBLEM_MEDIA_TYPE"]

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
_TYPE_BASE = "https://aooct.dev/problems/"


class Problem(Exception):
    """An error the application layer raises; the gateway turns it into problem JSON.

    Parameters
    ----------
    status : int
        HTTP status code.
    kind : str
        Short stable name (``not-found``, ``forbidden``, ...), the last part of ``type``.
    detail : str
        What went wrong, for the caller, and how to fix it.
    headers : dict, optional
        Extra response headers (``WWW-Authenticate``, ``Retry-After``).
    """

    def __init__(self, status: int, kind: str, detail: str, *, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.kind, self.detail, self.headers = int(status), kind, detail, headers or {}


_TITLES = {400: "Bad request", 401: "Not authenticated", 403: "Forbidden", 404: "Not found",
           405: "Method not allowed", 413: "Payload too large", 422: "Invalid request",
           411: "Length required", 429: "Too many requests", 500: "Internal error", 503: "Service unavailable"}


def problem_response(request: Request, status: int, kind: str, detail: str, *,
                     headers: dict | None = None, extra: dict | None = None) -> JSONResponse:
    body = {"type": _TYPE_BASE + kind, "title": _TITLES.get(status, "Error"), "status": status,
            "detail": detail, "instance": request.url.path}
    body.update(extra or {})
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` with problem JSON."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem):
        return problem_response(request, exc.status, exc.kind, exc.detail, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in exc.errors()]
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        return problem_response(request, 422, "invalid-request", f"the request does not validate: {where}",
                                extra={"errors": errors})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        kind = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return problem_response(request, exc.status_code, kind, str(exc.detail), headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(request, 500, "internal-error",
                                "the gateway hit an unexpected error; it is logged with this request's path "
                                "and time — report both to the platform admins")
