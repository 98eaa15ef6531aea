"""dramatiq's entry module for ``python -m worker thumbnails``: broker first, then the actors."""

from __future__ import annotations

from shared.logs import configure_logging
from shared.settings import Settings
from worker.broker import setup_broker

settings = Settings()
configure_logging(settings, "thumbnails")
broker = setup_broker(settings)

from worker.thumbnails import actors  # noqa: E402  (actors bind to the broker set above)

actors.configure(settings)
broker.add_middleware(actors.CloseResources())
