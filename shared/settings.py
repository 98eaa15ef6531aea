"""Settings from environment variables (and a `.env` file; the real environment wins).

Built once in each process's ``__main__`` and passed down; never read at import time.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: A cursor secret shorter than this is refused at start (a short one could be guessed offline from one cursor).
CURSOR_SECRET_MIN_LENGTH = 16


class Settings(BaseSettings):
    """Every setting of the contract, with its default."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str = "postgresql://postgres@127.0.0.1:5432/stockroom"
    redis_url: str = "redis://127.0.0.1:6379/0"
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    media_root: str = "./var/media"
    media_url: str = "/media/"
    api_host: str = "0.0.0.0"
    api_port: int = 8000
    log_level: str = "INFO"
    log_format: str = "json"
    #: One log line per event (the relay's ``event published``, the cache worker's ``projected``) at INFO, so
    #: that each write's way shows under its request id. Off, they are DEBUG lines and counters count the events:
    #: at INFO they took 21 % of the relay's CPU and 12 % of the cache worker's. ``make run`` turns it on.
    log_events: bool = False
    auth_disabled: bool = False
    bootstrap_api_key: str | None = None
    #: The key that signs pagination cursors; the same for every API process. Unset, ``python -m api`` reads it
    #: from ``cursor_secret_file``, generating that file once (local runs).
    cursor_secret: SecretStr | None = None
    cursor_secret_file: str = "./var/cursor-secret"
    #: Origins allowed to call the API from a browser, comma-separated (``*``: any); unset, no CORS headers.
    cors_origins: str | None = None
    #: Serve ``/api/openapi.json``, ``/api/docs`` (Swagger UI) and ``/api/redoc``; when false they are 404.
    docs_enabled: bool = True

    #: PostgreSQL pool bounds per API process.
    pg_pool_max: int = Field(default=10, ge=1)
    #: Seconds to connect to PostgreSQL / to run one statement before a write answers 503.
    pg_connect_timeout: float = Field(default=1.5, gt=0)
    pg_command_timeout: float = Field(default=10.0, gt=0)
    #: Seconds a write may take in all (connect, statements, commit) before it answers 503: a PostgreSQL that
    #: hangs costs a client this long, never more. Retry with the same Idempotency-Key to be safe.
    write_deadline: float = Field(default=1.9, gt=0)
    #: After a write commits, the API projects it into Redis itself (read-your-writes). Off, only the cache
    #: worker projects: the benchmark turns it off to time the event pipeline alone.
    read_model_write_through: bool = True
    #: Seconds a client should wait before retrying after a 503.
    retry_after_seconds: int = 2

    #: Outbox relay: rows claimed per transaction.
    relay_batch_size: int = Field(default=200, ge=1, le=10_000)
    #: Outbox relay: seconds between polls when no NOTIFY arrives (NOTIFY is lost while disconnected).
    relay_poll_interval: float = Field(default=1.0, gt=0)
    #: Outbox relay: seconds to wait for every publisher confirm of a batch before rolling it back.
    relay_publish_timeout: float = Field(default=5.0, gt=0)
    #: Outbox relay: seconds a pass that woke from idle waits before it claims, so that events committed close
    #: together go out as one batch (a batch costs the relay, RabbitMQ and the cache worker about the same with one
    #: event or fifty). Not paid while a backlog drains (a full batch claims the next at once). 0 turns it off.
    relay_linger: float = Field(default=0.01, ge=0, le=1)
    #: Relay passes in flight at once in one relay process (each holds one PostgreSQL connection).
    relay_concurrency: int = Field(default=4, ge=1, le=32)
    #: Outbox relay: sent rows are deleted after this many hours.
    outbox_retention_hours: float = Field(default=168, ge=0)
    #: Outbox relay: Prometheus metrics port (0 = no metrics server).
    relay_metrics_port: int = Field(default=9192, ge=0, le=65535)
    #: Where the relay's and the dramatiq workers' Prometheus ports listen: loopback unless told otherwise
    #: (compose and Kubernetes, where Prometheus scrapes them, set ``0.0.0.0``). dramatiq's own
    #: ``dramatiq_prom_host``, when set, wins for the workers.
    worker_metrics_host: str = "127.0.0.1"

    #: Image storage: S3-compatible when ``s3_bucket`` is set, else the local directory ``media_root``.
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    #: Thumbnails: ``name=pixels`` pairs, each the box (longest side) one thumbnail fits in.
    thumbnail_sizes: str = "small=160,medium=480,large=1024"
    #: Uploads over this many bytes are refused with 413 (20 MiB).
    image_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    #: Images with more pixels than this are a permanent failure, never decoded (decompression bombs).
    image_max_pixels: int = Field(default=50_000_000, ge=1)
    #: ``python -m worker thumbnails collect`` removes originals and thumbnails that no product references only
    #: once they are this many seconds old (an upload in flight has written its file but not yet committed).
    media_gc_grace_seconds: float = Field(default=86_400.0, ge=0)

    #: ``GET /metrics`` (Prometheus); when false it is 404.
    metrics_enabled: bool = True
    #: When not 0, ``/metrics`` is served on this port only (on ``internal_host``), not on the main port.
    internal_port: int = Field(default=0, ge=0, le=65535)
    internal_host: str = "0.0.0.0"
    #: Rate limits in Redis (GCRA): reads per client address, writes per API key; fail open without Redis.
    rate_limit_enabled: bool = True
    rate_limit_reads_per_second: float = Field(default=200.0, gt=0)
    rate_limit_reads_burst: int = Field(default=400, ge=1)
    #: Reads granted to a process per Redis check of a client (a lease, charged at once and then served with no
    #: Redis round trip), at most a 32nd of the burst; 1 checks every read in Redis.
    rate_limit_reads_lease: int = Field(default=8, ge=1, le=64)
    rate_limit_writes_per_second: float = Field(default=50.0, gt=0)
    rate_limit_writes_burst: int = Field(default=100, ge=1)
    #: Writes granted to a process per Redis check of a key, as for reads (at most a 32nd of the burst: 3 with the
    #: defaults); 1 checks every write in Redis.
    rate_limit_writes_lease: int = Field(default=4, ge=1, le=64)
    #: PostgreSQL lookups of API keys this process has never verified, per client address (a flood of random keys
    #: is refused with 429 past it, before any query). A key verified before is re-checked every 30 s ungated.
    rate_limit_key_lookups_per_second: float = Field(default=5.0, gt=0)
    rate_limit_key_lookups_burst: int = Field(default=50, ge=1)
    #: Seconds a connection may wait for a complete request line and headers (idle, or trickling them) before it
    #: is closed; and seconds a request's body may take to arrive before it is answered 408 and closed.
    http_header_timeout: float = Field(default=10.0, gt=0)
    http_body_timeout: float = Field(default=60.0, gt=0)
    #: Comma-separated addresses or CIDR blocks of reverse proxies whose ``X-Forwarded-For`` names the client.
    trusted_proxies: str = ""

    @field_validator("cursor_secret")
    @classmethod
    def _cursor_secret_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < CURSOR_SECRET_MIN_LENGTH:
            raise ValueError(f"CURSOR_SECRET must be at least {CURSOR_SECRET_MIN_LENGTH} characters")
        return value


def with_cursor_secret(settings: Settings) -> Settings:
    """``settings`` with a cursor secret: ``CURSOR_SECRET`` if set, else the one kept in ``cursor_secret_file``,
    which is made (mode 0600, a random 256-bit secret) by the first process that needs it. Every process that
    starts in the same directory then signs with the same key, restart after restart."""
    if settings.cursor_secret is not None:
        return settings
    path = Path(settings.cursor_secret_file)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside, then linked into place: a process starting at the same moment never reads half a file,
        # and of two that race, one link wins and both read its secret.
        aside = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, (secrets.token_urlsafe(32) + "\n").encode())
        finally:
            os.close(fd)
        try:
            os.link(aside, path)
        except FileExistsError:
            pass
        finally:
            aside.unlink()
    return settings.model_copy(update={"cursor_secret": SecretStr(path.read_text(encoding="utf-8").strip())})
