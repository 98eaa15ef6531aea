"""The birthday greeting service: ``/hello/{username}`` and ``/api/users/birthdays/today``."""

from __future__ import annotations

import datetime as dt
import re

import asyncpg
from aiohttp import web

from api import commands, queries
from api.auth import requires
from api.commands import Outcome
from api.handlers.common import ctx, finish, reads
from api.http import json_response, loads, read_body, validate
from api.schemas import USERNAME_PATTERN, BirthdayIn
from shared.errors import FieldError, NotFound, ValidationFailed
from shared.models import Written

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
        user = await commands.upsert_user(conn, c, username, body.dateOfBirth)
        return Outcome(204, b"", written=Written(id=0, version=user.version, entity=user, lsn=user.lsn))

    return await finish(request, await commands.run(c, op))


async def get(request: web.Request) -> web.Response:
    username = request.match_info["username"]
    if not _USERNAME.match(username):
        raise NotFound(f"no user {username!r}")
    return json_response(await queries.greeting(reads(request), username, today()))


async def today_list(request: web.Request) -> web.Response:
    return json_response(await queries.birthdays_today(reads(request), today()))
