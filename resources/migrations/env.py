"""Alembic environment for the aooct metadata DB (SQLite or PostgreSQL).

The URL comes from the alembic config (``sqlalchemy.url``, set by
``resources.metadata_db.upgrade``) or, from the command line, from ``AOOCT_DB_URL``:
``AOOCT_DB_URL=postgresql+psycopg2://... alembic -c resources/migrations/alembic.ini upgrade head``.
"""
from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from resources.config import load_config
from resources.db_models import metadata

config = context.config
target_metadata = metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or load_config().db_url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        _run(connection)


def _run(connection) -> None:
    # render_as_batch: SQLite cannot ALTER most things in place; batch mode rebuilds tables.
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
