"""Versioned SQL migrations, applied at start: safe to run twice and from two replicas at once.

Each ``NNN_name.sql`` runs once, in order, inside one transaction that holds a PostgreSQL advisory lock, and is
recorded in ``schema_migrations``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import asyncpg

MIGRATIONS = Path(__file__).with_name("migrations")
LOCK_KEY = 0x5E0FF0C2  # any constant shared by every replica of this service
log = logging.getLogger(__name__)


def migration_files() -> list[tuple[int, Path]]:
    files = []
    for p in sorted(MIGRATIONS.glob("*.sql")):
        files.append((int(p.name.split("_", 1)[0]), p))
    return files


async def migrate(conn: asyncpg.Connection) -> list[int]:
    """Apply pending migrations; returns the versions applied by this call."""
    applied: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, path in migration_files():
            if version in done:
                continue
            await conn.execute(path.read_text())
            await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, path.name)
            applied.append(version)
            log.info("applied migration %s", path.name)
    return applied
