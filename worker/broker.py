"""The dramatiq broker. Set up before any actor module is imported (dramatiq binds actors at import)."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import AsyncIO, Retries, TimeLimit
from dramatiq.middleware.prometheus import Prometheus

from shared.settings import Settings

#: Retry backoff ceiling: well under RabbitMQ's consumer_timeout (30 min), which would redeliver held messages.
MAX_BACKOFF_MS = 5 * 60 * 1000
MIN_BACKOFF_MS = 500
MAX_RETRIES = 10


def setup_broker(settings: Settings, *, asyncio: bool = False) -> RabbitmqBroker:
    """Create the broker for this process and make it dramatiq's global broker."""
    middleware = [
        Prometheus(),
        TimeLimit(),
        Retries(max_retries=MAX_RETRIES, min_backoff=MIN_BACKOFF_MS, max_backoff=MAX_BACKOFF_MS),
    ]
    if asyncio:
        middleware.append(AsyncIO())
    broker = RabbitmqBroker(url=settings.rabbitmq_url, middleware=middleware)
    dramatiq.set_broker(broker)
    return broker
