"""The one URL table (the app factory registers it). Every path answers with and without a trailing slash,
without a redirect."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from api.handlers import birthdays, categories, docs, health, images, products, records

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: (method, path, handler); the OpenAPI document is generated from this table too. Every ``GET`` answers
#: ``HEAD`` as well (:func:`api.app.create_app` registers both). A record's ``{id}`` is digits only, so
#: ``/picus/list`` and ``/picus/put`` are no record's path: ``DELETE`` there is a 405 naming what they take.
ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/health/live", health.live),
    ("GET", "/health/ready", health.ready),
    ("GET", "/health", health.ready),
    ("GET", "/api/categories", categories.list_),
    ("POST", "/api/categories", categories.create),
    ("GET", "/api/categories/{slug}", categories.get),
    ("PUT", "/api/categories/{slug}", categories.replace),
    ("PATCH", "/api/categories/{slug}", categories.patch),
    ("DELETE", "/api/categories/{slug}", categories.delete),
    ("POST", "/api/categories/{slug}/restore", categories.restore),
    ("GET", "/api/products", products.list_),
    ("POST", "/api/products", products.create),
    ("GET", "/api/products/{slug}", products.get),
    ("PUT", "/api/products/{slug}", products.replace),
    ("PATCH", "/api/products/{slug}", products.patch),
    ("DELETE", "/api/products/{slug}", products.delete),
    ("POST", "/api/products/{slug}/restore", products.restore),
    ("PUT", "/api/products/{slug}/image", images.put),
    ("DELETE", "/api/products/{slug}/image", images.delete),
    ("GET", "/media/{key:.+}", images.media),
    ("GET", "/api/records", records.list_),
    ("POST", "/api/records", records.create),
    ("GET", "/api/records/{id:[0-9]+}", records.get),
    ("PUT", "/api/records/{id:[0-9]+}", records.replace),
    ("DELETE", "/api/records/{id:[0-9]+}", records.delete),
    ("POST", "/picus/put", records.picus_put),
    ("GET", "/picus/list", records.picus_list),
    ("GET", "/picus/get/{id:[0-9]+}", records.picus_get),
    ("DELETE", "/picus/{id:[0-9]+}", records.delete),
    ("POST", "/data", records.data_post),
    ("GET", "/data", records.data_list),
    ("PUT", "/hello/{username}", birthdays.put),
    ("GET", "/hello/{username}", birthdays.get),
    ("GET", "/api/users/birthdays/today", birthdays.today_list),
    # The API's documentation (404 when DOCS_ENABLED=false); the OpenAPI document leaves these out.
    ("GET", "/api/openapi.json", docs.openapi_json),
    ("GET", "/api/asyncapi.json", docs.asyncapi_json),
    ("GET", "/api/docs", docs.swagger_ui),
    ("GET", "/api/docs/static/{name}", docs.asset),
    ("GET", "/api/redoc", docs.redoc),
    ("GET", "/api/redoc/static/{name}", docs.asset),
]
