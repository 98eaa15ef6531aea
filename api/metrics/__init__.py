"""The API's metrics: the series (series, tally), the access log (access) and the ``/metrics`` scrape (scrape).

The names the rest of the API uses are re-exported here; :mod:`api.metrics.scrape` is imported by the app
factory only (it reads the app's state keys).
"""

from api.metrics.access import UNMATCHED, recorder
from api.metrics.series import METRICS, MULTIPROC_ENV, Metrics

__all__ = ["METRICS", "MULTIPROC_ENV", "UNMATCHED", "Metrics", "recorder"]
