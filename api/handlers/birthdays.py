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
from shared.errors import BadRequest, FieldError, ValidationFailed

#: Letters only, the whole path segment: ``fullmatch``, since ``$`` also matches before a final newline
#: (``Ann%0A`` passed ``re.match`` and made a second user named "Ann\n").
_USERNAME = re.compile(USERNAME_LETTERS)
_USERNAME_FAULT = "must be 1 to 64 letters (A-Z, a-z)"
_NOT_BORN = "must be a date before today"


def _bad_username(username: str) -> FieldError | None:
    return None if _USERNAME.fullmatch(username) else FieldError(loc=["path", "username"], msg=_USERNAME_FAULT)


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


@requires("write")
async def put(request: web.Request) -> web.Response:
    username = request.match_info["username"]
    faults = [fault] if (fault := _bad_username(username)) is not None else []
    body: BirthdayIn | None = None
    try:
        body = validate(BirthdayIn, loads(await read_body(request)))
    except ValidationFailed as exc:
        faults.extend(exc.errors)
    unborn = body is not None and body.dateOfBirth >= today()
    if faults:
        if unborn:
            faults.append(FieldError(loc=["body", "dateOfBirth"], msg=_NOT_BORN))
        raise ValidationFailed("the request failed validation", errors=faults)
    assert body is not None
    if unborn:
        # The older service's answer: 400, not 422 (the date is well formed, only not in the past).
        raise BadRequest(_NOT_BORN, errors=[FieldError(loc=["body", "dateOfBirth"], msg=_NOT_BORN)])
    return await write(request, commands.UpsertUser(username, body.dateOfBirth))


async def get(request: web.Request) -> web.Response:
    username = request.match_info["username"]
    if (fault := _bad_username(username)) is not None:
        raise ValidationFailed(f"{username!r} is no username", errors=[fault])
    return json_response(await queries.greeting(reads(request), username, today()))


async def today_list(request: web.Request) -> web.Response:
    return json_response(await queries.birthdays_today(reads(request), today()))
