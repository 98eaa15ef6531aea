"""The birthday greeting service: ``/hello/{username}`` and ``/api/users/birthdays/today``."""

from __future__ import annotations

import datetime as dt
import re

from aiohttp import web

from api import commands, queries
from api.auth import requires
from api.handlers.common import reads, write
from api.parsing import loads, read_body
from api.responses import json_response
from api.schemas import USERNAME_LETTERS, BirthdayIn, validate
from shared.errors import FieldError, ValidationFailed

#: Letters only, the whole path segment: ``fullmatch``, since ``$`` also matches before a final newline
#: (``Ann%0A`` passed ``re.match`` and made a second user named "Ann\n").
_USERNAME = re.compile(USERNAME_LETTERS)
_USERNAME_FAULT = "must be 1 to 64 letters (A-Z, a-z)"


def _bad_username(username: str) -> FieldError | None:
    return None if _USERNAME.fullmatch(username) else FieldError(loc=["path", "username"], msg=_USERNAME_FAULT)


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


@requires("write")
async def put(request: web.Request) -> web.Response:
    username = request.match_info["username"]
    faults = [fault] if (fault := _bad_username(username)) is not None else []
    try:
        body = validate(BirthdayIn, loads(await read_body(request)))
    except ValidationFailed as exc:
        faults.extend(exc.errors)
    else:
        if body.dateOfBirth >= today():
            faults.append(FieldError(loc=["body", "dateOfBirth"], msg="must be a date before today"))
    if faults:
        raise ValidationFailed("the request failed validation", errors=faults)
    return await write(request, commands.UpsertUser(username, body.dateOfBirth))


async def get(request: web.Request) -> web.Response:
    username = request.match_info["username"]
    if (fault := _bad_username(username)) is not None:
        raise ValidationFailed(f"{username!r} is no username", errors=[fault])
    return json_response(await queries.greeting(reads(request), username, today()))


async def today_list(request: web.Request) -> web.Response:
    return json_response(await queries.birthdays_today(reads(request), today()))
