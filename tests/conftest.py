"""Real services for the tests: a fresh PostgreSQL database per session and fresh RabbitMQ vhosts."""

import asyncio
import os
import subprocess
import uuid

import asyncpg
import pytest

PG_ADMIN = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_BASE = os.environ.get("TEST_AMQP_BASE", "amqp://guest:guest@127.0.0.1:5672")


def _run(coro):
    return asyncio.new_event_loop().run_until_complete(coro)


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def pg_database():
    name = f"ocr_test_{uuid.uuid4().hex[:10]}"
    _run(_admin(f'CREATE DATABASE "{name}"'))
    yield name
    _run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg_url(pg_database):
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{pg_database}"


def _vhost():
    vhost = f"ocr_test_{uuid.uuid4().hex[:10]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    yield f"{AMQP_BASE}/{vhost}"
    rabbitmqctl("delete_vhost", vhost)


@pytest.fixture
def amqp_url():
    """A vhost of its own for each test, so queues never carry messages from one test into another."""
    yield from _vhost()


@pytest.fixture(scope="session")
def session_amqp_url():
    yield from _vhost()
