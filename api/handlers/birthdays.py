"""The birthday greeting service: ``/hello/{username}`` and ``/api/users/birthdays/today``."""

from __future__ import annotations

import datetime as dt
import re

import asyncpg
from aiohttp import web

from api import commands, queries
from api.auth import requires
from api.commands import Outcome
from api.handlers.common import ctx, respond
from api.http import json_response, loads, read_body, validate
from api.keys import PG_POOL, SETTINGS
from api.schemas import USERNAME_PATTERN, BirthdayIn
from shared.errors import FieldError, NotFound, ValidationFailed

_USERNAME = re.compile(USERNAME_PATTERN)


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


@requires("write")
async def put(request: web.Request) -> web.Response:
    username = request.match_info["username"]
    faults = []
    if not _USERNAME.match(username):
        faults.append(FieldError(loc=["path", "username"], msg="must be 1 to 64 letters (A-Z, a-z)"))
    try:
        body = validate(BirthdayIn, loads(await read_body(request)))
    except ValidationFailed as exc:
        faults.extend(exc.errors)
    else:
        if body.dateOfBirth >= today():
            faults.append(FieldError(loc=["body", "dateOfBirth"], msg="must be a date before today"))
    if faults:
        raise ValidationFailed("the request failed validation", errors=faults)
    c = ctx(request)

    async def op(conn: asyncpg.Connection) -> Outcome:
        await commands.upsert_user(conn, c, username, body.dateOfBirth)
        return Outcome(204, b"")

    return respond(await commands.run(c, op))


async def get(request: web.Request) -> web.Response:
    username = request.match_info["username"]
    if not _USERNAME.match(username):
        raise NotFound(f"no user {username!r}")
    settings = request.app[SETTINGS]
    return json_response(await queries.greeting(request.app[PG_POOL], settings.pg_connect_timeout, username, today()))


async def today_list(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    return json_response(await queries.birthdays_today(request.app[PG_POOL], settings.pg_connect_timeout, today()))
