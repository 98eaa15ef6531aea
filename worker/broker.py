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


class ActorMetrics(Prometheus):
    """dramatiq's Prometheus middleware, with every actor's series present from the start: at 0, not missing.

    In multiprocess mode a series exists only once a process touched it, so an idle worker answered an empty
    scrape, and an alert on ``rate(dramatiq_message_errors_total[5m])`` saw nothing rather than 0.
    """

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        super().after_process_boot(broker)  # type: ignore[no-untyped-call]
        for name in broker.get_declared_actors():
            actor = broker.get_actor(name)
            labels = (actor.queue_name, actor.actor_name)
            for metric in (
                self.total_messages,
                self.total_errored_messages,
                self.total_retried_messages,
                self.total_rejected_messages,
                self.inprogress_messages,
            ):
                metric.labels(*labels)


def setup_broker(settings: Settings, *, asyncio: bool = False) -> RabbitmqBroker:
    """Create the broker for this process and make it dramatiq's global broker."""
    middleware = [
        ActorMetrics(),
        TimeLimit(),
        Retries(max_retries=MAX_RETRIES, min_backoff=MIN_BACKOFF_MS, max_backoff=MAX_BACKOFF_MS),
    ]
    if asyncio:
        middleware.append(AsyncIO())
    broker = RabbitmqBroker(url=settings.rabbitmq_url, middleware=middleware)
    dramatiq.set_broker(broker)
    return broker
