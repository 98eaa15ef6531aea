"""dramatiq entry module for ``python -m worker cache``: broker first, then the actors."""

from shared.logs import configure_logging
from shared.settings import Settings
from worker.broker import setup_broker

settings = Settings()
configure_logging(settings, "worker-cache")
setup_broker(settings, asyncio=True)

from worker import cache  # noqa: E402  (actors bind to the broker set up above)

cache.configure(settings)
