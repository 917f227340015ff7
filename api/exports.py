"""Exports to the export location (a folder, an NFS mount or an S3 prefix): metrics tables as
CSV or Parquet and case reports, each under its own ``<UTC stamp>_<actor>/`` prefix directly
below the location (the location is the exports folder itself) so that no export ever
overwrites another. Shared by the review app and the gateway."""
from __future__ import annotations

import io
import re
from datetime import datetime, timezone

__all__ = ["export_prefix", "table_bytes", "write_table", "copy_report", "LEFT_OUT"]

#: Case statuses a cohort export leaves out unless asked to include them: a rejected case's
#: numbers are not for publication.
LEFT_OUT = ("rejected",)


def export_prefix(actor: str) -> str:
    """``<stamp>_<actor>`` (below the export location) with the actor made store-safe."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}_{re.sub(r'[^A-Za-z0-9_.-]', '_', actor)}"


def table_bytes(df, fmt: str) -> bytes:
    """A polars DataFrame as CSV or Parquet bytes (the export file, or a browser download)."""
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"export format must be 'csv' or 'parquet'; got {fmt!r}")
    buf = io.BytesIO()
    if fmt == "csv":
        df.write_csv(buf)
    else:
        df.write_parquet(buf)
    return buf.getvalue()


def write_table(df, store, *, actor: str, fmt: str) -> str:
    """Write a polars DataFrame as CSV or Parquet to ``store``; return its URI."""
    data = table_bytes(df, fmt)
    key = f"{export_prefix(actor)}/metrics.{fmt}"
    store.put_bytes(key, data)
    return store.uri(key)


def copy_report(store, report_key: str, export_store, *, case_id: str, actor: str) -> str:
    """Copy a case report from the artifact ``store`` to the export location; return its URI."""
    key = f"{export_prefix(actor)}/{case_id}_report.html"
    export_store.put_bytes(key, store.get_bytes(report_key))
    return export_store.uri(key)
