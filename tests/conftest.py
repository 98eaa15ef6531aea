"""Test fixtures: real PostgreSQL, Redis and RabbitMQ. A missing service fails the run; nothing is skipped.

PostgreSQL: one template database migrated per session; every test gets a fresh database cloned from it.
Redis: a database index of its own, flushed per test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis
from aiohttp.test_utils import TestClient

from api import transport
from api.app import create_app
from migrations.runner import migrate
from shared.settings import Settings
from shared.store.pool import init_connection

# The app under test sends its answers as `python -m api` does: those made in one turn of the loop together.
transport.install()

PG_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
#: Each session claims a Redis database index of its own (see ``_claim_redis_db``), so parallel runs on one
#: machine never flush each other's data.
_REDIS_BASE = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _claim_redis_db() -> str:
    """Claim a free database index 1..15 with a lock key in database 0 (released at exit, expires anyway)."""
    import atexit

    base = redis.Redis.from_url(_REDIS_BASE)
    try:
        for n in range(1, 16):
            lock = f"stockroom-test-lock:{n}"
            if base.set(lock, os.getpid(), nx=True, ex=3600):
                atexit.register(redis.Redis.from_url(_REDIS_BASE).delete, lock)
                return urlunsplit(urlsplit(_REDIS_BASE)._replace(path=f"/{n}"))
    except redis.RedisError:
        pass  # the services fixture reports an unreachable Redis
    finally:
        base.close()
    return urlunsplit(urlsplit(_REDIS_BASE)._replace(path=f"/{1 + os.getpid() % 15}"))


REDIS_URL = _claim_redis_db()
RABBITMQ_BASE = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
#: Each session gets a RabbitMQ vhost of its own (made with rabbitmqctl, deleted at the end).
RABBITMQ_VHOST = f"stockroom-test-{os.getpid()}"
RABBITMQ_URL = RABBITMQ_BASE.rstrip("/") + "/" + RABBITMQ_VHOST
#: The admin key every test app accepts (BOOTSTRAP_API_KEY).
ADMIN_KEY = "test-bootstrap-admin-key"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _dsn(dbname: str) -> str:
    return urlunsplit(urlsplit(PG_URL)._replace(path=f"/{dbname}"))


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session", autouse=True)
def services() -> None:
    """Every test needs the real services; one that does not answer fails the run (never a skip)."""
    missing = [
        name
        for name, url, port in (
            ("PostgreSQL", PG_URL, 5432),
            ("Redis", REDIS_URL, 6379),
            ("RabbitMQ", RABBITMQ_URL, 5672),
        )
        if not _reachable(url, port)
    ]
    if missing:
        pytest.fail(f"services not reachable: {', '.join(missing)} (start them: see README)", pytrace=False)


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def _management(method: str, path: str, body: dict[str, str] | None = None) -> None:
    """The management HTTP API, where rabbitmqctl is not on this machine (RabbitMQ in a container)."""
    import base64
    import json
    import urllib.request

    parts = urlsplit(RABBITMQ_BASE)
    auth = base64.b64encode(f"{parts.username or 'guest'}:{parts.password or 'guest'}".encode()).decode()
    req = urllib.request.Request(
        f"http://{parts.hostname or '127.0.0.1'}:15672/api/{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"},
    )
    urllib.request.urlopen(req, timeout=30).close()


def set_policy(name: str, pattern: str, definition: dict[str, object]) -> None:
    """A queue policy on this session's vhost (rabbitmqctl, or the management API where it is missing)."""
    import json

    if shutil.which("rabbitmqctl"):
        args = ["set_policy", "-p", RABBITMQ_VHOST, "--apply-to", "queues", name, pattern, json.dumps(definition)]
        _rabbitmqctl(*args)
    else:
        body = {"pattern": pattern, "definition": definition, "apply-to": "queues"}
        _management("PUT", f"policies/{RABBITMQ_VHOST}/{name}", body)  # type: ignore[arg-type]


def clear_policy(name: str) -> None:
    if shutil.which("rabbitmqctl"):
        _rabbitmqctl("clear_policy", "-p", RABBITMQ_VHOST, name)
    else:
        _management("DELETE", f"policies/{RABBITMQ_VHOST}/{name}")


@pytest.fixture(scope="session")
def rabbitmq_url(services: None) -> Iterator[str]:
    """A RabbitMQ vhost of this session's own, with full rights for the test user."""
    user = urlsplit(RABBITMQ_BASE).username or "guest"
    if shutil.which("rabbitmqctl"):
        _rabbitmqctl("add_vhost", RABBITMQ_VHOST)
        _rabbitmqctl("set_permissions", "-p", RABBITMQ_VHOST, user, ".*", ".*", ".*")
    else:
        _management("PUT", f"vhosts/{RABBITMQ_VHOST}")
        _management("PUT", f"permissions/{RABBITMQ_VHOST}/{user}", {"configure": ".*", "write": ".*", "read": ".*"})
    yield RABBITMQ_URL
    if shutil.which("rabbitmqctl"):
        _rabbitmqctl("delete_vhost", RABBITMQ_VHOST)
    else:
        _management("DELETE", f"vhosts/{RABBITMQ_VHOST}")


async def admin_execute(sql: str) -> None:
    """Run one statement (CREATE or DROP DATABASE) on the server's maintenance database."""
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def drop_database(name: str) -> None:
    """Drop a test database if it exists, closing any connection still open on it."""
    await admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def template_db(services: None) -> Iterator[str]:
    """A migrated template database, made once per session."""
    name = f"stockroom_tmpl_{os.getpid()}"

    async def setup() -> None:
        await drop_database(name)
        await migrate(_dsn(name))

    asyncio.run(setup())
    yield name

    async def teardown() -> None:
        await drop_database(name)

    asyncio.run(teardown())


@contextlib.asynccontextmanager
async def scratch_database(prefix: str, template: str | None = None) -> AsyncIterator[str]:
    """The URL of a new database named ``<prefix>_<random>`` (a copy of ``template``, or empty), dropped at the
    end."""
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    await admin_execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    try:
        yield _dsn(name)
    finally:
        await drop_database(name)


@pytest.fixture
async def database_url(template_db: str) -> AsyncIterator[str]:
    """A fresh database cloned from the template, dropped after the test."""
    async with scratch_database("stockroom_t", template_db) as url:
        yield url


@pytest.fixture
def redis_url(services: None) -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture
def settings(database_url: str, redis_url: str, tmp_path: object) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        rabbitmq_url=RABBITMQ_URL,
        media_root=str(tmp_path),
        bootstrap_api_key=ADMIN_KEY,
        auth_disabled=False,
        log_format="console",
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
async def pg(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection to the test's database, to look behind the API."""
    conn = await asyncpg.connect(database_url)
    await init_connection(conn)  # the same codecs (jsonb via orjson) as the application's pool
    yield conn
    await conn.close()


@pytest.fixture
async def client(aiohttp_client, settings: Settings) -> TestClient:  # type: ignore[no-untyped-def]
    return await aiohttp_client(create_app(settings))
