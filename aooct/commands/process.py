"""``aooct process [CASE_DIR...]``: a lab's own cases through the platform, in this process.

What ``aooct demo`` does, for real cases and without a daemon: the named case folders (or,
with none, every complete drop in ``AOOCT_DROP``) are judged by the drop sensor's logic —
complete and stable, content hash, quarantine with a reason, duplicates, a new version for
other content under a known ``case_id`` — and each requested case is materialized on the
configured stores, DB and Dagster instance (the Dagster UI shows the runs). Runs whose
process died earlier are failed first and their pool slots freed.

Prints one line per case (``<case>: ok|qc_failed|failed|skipped ...``) and exits 2 if any
failed (a case blocked by a QC check was processed: ``qc_failed`` says why, exit 0).
"""
from __future__ import annotations

from pathlib import Path

import typer

from aooct.errors import CliError


def register(app: typer.Typer) -> None:
    @app.command()
    def process(
        case_dirs: list[Path] = typer.Argument(None, help="Case folders (case.json + volumes); "
                                               "none: every complete drop in AOOCT_DROP."),
        settle_s: float = typer.Option(1.0, "--settle-s", min=0.0, max=600.0,
                                       help="Seconds between the two looks at the drop (a drop "
                                            "still being copied changes between them and waits)."),
    ) -> None:
        """Ingest case folders (or the drop) and run the whole pipeline on them here."""
        from aooct_assets.local_runs import prepare_environment, process_drop

        cfg = prepare_environment()
        try:
            outcomes = process_drop(cfg, folders=list(case_dirs or []), settle_s=settle_s)
        except ValueError as exc:
            raise CliError(str(exc)) from exc
        if not outcomes:
            print("no complete new case in the drop" + (" (see the drop notes above)" if case_dirs else ""))
        for o in outcomes:
            where = f"run {o.run_id[:8]}, " if o.run_id else ""
            print(f"{o.partition_key}: {o.status} ({where}{o.seconds:.1f} s, drop {o.drop})"
                  + (f" — {o.detail}" if o.detail else ""))
        failed = [o.partition_key for o in outcomes if o.status == "failed"]
        if failed:
            raise CliError(f"{len(failed)} case(s) failed: {', '.join(failed)}; the Dagster UI "
                           "shows the step logs")
