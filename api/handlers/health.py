"""``/health/live`` and ``/health/ready`` (also ``/health``)."""

from __future__ import annotations

from aiohttp import web

from api.responses import json_response
from api.state import READINESS
from shared.readmodel.render import dumps


async def live(request: web.Request) -> web.Response:
    return json_response(b'{"status":"ok"}')


async def ready(request: web.Request) -> web.Response:
    checks = await request.app[READINESS].check()
    failed = sorted(name for name, state in checks.items() if state != "ok")
    if failed:
        body = {"status": "unavailable", "checks": checks, "failed": failed}
        return json_response(dumps(body), status=503, headers={"Retry-After": "5"})
    return json_response(dumps({"status": "ok", "checks": checks}))
