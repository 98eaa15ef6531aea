"""The ceilings, served by the same interpreter and event loop on the same core as the API:

- ``GET /json``: a bare aiohttp + uvloop handler returning constant JSON (the framework's ceiling);
- ``POST /api/products``: a bare handler that inserts the product and its outbox row in one CTE statement
  (the write ceiling): no validation, no auth, no slug logic, no read model.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import AsyncIterator
from decimal import Decimal

import asyncpg
import orjson
import uvloop
from aiohttp import web

POOL = web.AppKey("pool", asyncpg.Pool)
CONSTANT = orjson.dumps({"status": "ok", "service": "stockroom", "items": [1, 2, 3]})
_NON_SLUG = re.compile(r"[^a-z0-9]+")

INSERT = """
WITH w AS (
    INSERT INTO products (slug, name, price, category_id, stock)
    SELECT $1, $2, $3, c.id, $5 FROM categories c WHERE c.slug = $4
    RETURNING id, slug, version),
ev AS (
    INSERT INTO outbox (type, aggregate, aggregate_id, version, payload)
    SELECT 'product.created', 'product', w.id::text, w.version, jsonb_build_object('slug', w.slug) FROM w)
SELECT id, slug, version FROM w
"""


async def _keep_session(_: asyncpg.Connection) -> None:
    return None


async def constant(_: web.Request) -> web.Response:
    return web.Response(body=CONSTANT, content_type="application/json")


async def insert(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    slug = _NON_SLUG.sub("-", body["name"].lower()).strip("-")
    async with request.app[POOL].acquire() as conn:
        row = await conn.fetchrow(INSERT, slug, body["name"], Decimal(body["price"]), body["category"], body["stock"])
    return web.Response(body=orjson.dumps(dict(row)), status=201, content_type="application/json")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dsn", required=True)
    args = parser.parse_args(argv)

    async def pool(app: web.Application) -> AsyncIterator[None]:
        # No reset query on release, as the API's pool (shared.store.pool.keep_session): the ceiling pays no round trip
        # the API does not.
        app[POOL] = await asyncpg.create_pool(args.dsn, min_size=2, max_size=10, reset=_keep_session)
        yield
        await app[POOL].close()

    app = web.Application()
    app.cleanup_ctx.append(pool)
    app.router.add_get("/json", constant)
    app.router.add_post("/api/products", insert)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
