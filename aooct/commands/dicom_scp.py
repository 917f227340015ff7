"""``aooct dicom-scp``: the DICOM receiver — scanners and PACS push OPT series, cases land in the drop.

Settings come from the environment (``AOOCT_DICOM_*``, see :mod:`api.dicom_scp`); the drop,
the metadata DB (for the Admin-only subject map) and the de-identification key are the
platform's (``AOOCT_DROP``, ``AOOCT_DB_URL``, ``AOOCT_DEID_KEY``). Runs until interrupted.
"""
from __future__ import annotations

import typer

from aooct.errors import CliError


def register(app: typer.Typer) -> None:
    @app.command("dicom-scp")
    def dicom_scp(
        port: int = typer.Option(None, help="Port (default AOOCT_DICOM_PORT or 11112)."),
    ) -> None:
        """Receive DICOM (C-ECHO, C-STORE of Ophthalmic Tomography) and drop each series as a case."""
        import logging
        import os

        from api.dicom_cases import SeriesAssembler
        from api.dicom_scp import ReceiverConfig, serve
        from resources.config import deid_uid_key, load_config
        from resources.metadata_db import SqlMetadataDB
        from resources.object_store import make_object_store

        env = dict(os.environ)
        if port is not None:
            env["AOOCT_DICOM_PORT"] = str(port)
        try:
            rcfg = ReceiverConfig.from_env(env)
            cfg = load_config()
            key = deid_uid_key()
        except ValueError as exc:
            raise CliError(str(exc)) from exc
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        logging.getLogger("aooct.dicom").setLevel(logging.INFO)
        db = SqlMetadataDB(cfg.db_url)
        drop = make_object_store(cfg.drop, **cfg.store_options())
        assembler = SeriesAssembler(
            cfg.home / "dicom-staging", drop, uid_key=key,
            map_subject=lambda subject, pseudonym: db.map_subject(subject, pseudonym=pseudonym),
            idle_s=rcfg.idle_s, defaults=dict(rcfg.case_defaults),
            max_instance_bytes=rcfg.max_instance_bytes)
        print(f"aooct dicom-scp: AE {rcfg.ae_title} on {rcfg.host}:{rcfg.port}, cases to {cfg.drop}"
              f" (series complete after {rcfg.idle_s:g} s idle); Ctrl-C stops", flush=True)
        try:
            serve(rcfg, assembler)
        except OSError as exc:
            raise CliError(f"cannot listen on {rcfg.host}:{rcfg.port}: {exc.strerror or exc}") from exc
        except KeyboardInterrupt:
            print("aooct dicom-scp: stopped; series still staged are assembled at the next start")
        finally:
            db.close()
