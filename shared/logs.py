"""Structured logging (structlog): one JSON object per line, or console output for humans.

The request id lives in a context variable, so every line logged while serving a request (or while
handling a message that carries one) names it.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog

from shared.settings import Settings

#: user:password@ in a URL; never logged.
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]*@", re.IGNORECASE)
#: Bearer tokens and API keys that slip into a message.
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_SECRET_KEYS = frozenset({"authorization", "api_key", "password", "bootstrap_api_key", "token", "key"})


def redact(text: str) -> str:
    """``text`` with URL passwords and bearer tokens replaced by ``***``.

    Each pattern runs only on a text holding its literal part (``://`` and ``@``; ``bearer`` in any case): every
    string of every log line passes here, and the two substitutions cost a write's access line more than the
    rest of its logging (profiled in bench/)."""
    if "://" in text and "@" in text:
        text = _URL_PASSWORD.sub(r"\g<scheme>\g<user>:***@", text)
    if "bearer" in text.lower():
        text = _BEARER.sub(r"\1***", text)
    return text


#: The request (or message) being served; set once per request, read by every log line.
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def _request_id_processor(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    rid = REQUEST_ID.get()
    if rid is not None:
        event_dict.setdefault("request_id", rid)
    return event_dict


def _redact_processor(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for k, v in list(event_dict.items()):
        if k.lower() in _SECRET_KEYS:
            event_dict[k] = "***"
        elif isinstance(v, str):
            event_dict[k] = redact(v)
    return event_dict


def _dumps(value: Any, **kw: Any) -> bytes:
    """A line as JSON bytes: orjson, or the standard library's json for what orjson refuses (an integer past 64
    bits, a key that is no string), so that no value a client sent can make logging fail."""
    try:
        return orjson.dumps(value, default=kw.get("default"))
    except TypeError:
        return json.dumps(value, **kw).encode()


def configure_logging(settings: Settings, process: str) -> None:
    """Configure structlog and the standard library's logging for one process."""
    level = logging.getLevelNamesMapping().get(settings.log_level.upper(), logging.INFO)
    shared_processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _request_id_processor,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_processor,
    ]
    renderer: Any
    if settings.log_format == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    else:
        # logging's handler writes text: the same serializer, decoded.
        renderer = structlog.processors.JSONRenderer(serializer=lambda v, **kw: _dumps(v, **kw).decode())
    # structlog's own lines (every line this project logs) are rendered by structlog and written straight to
    # stderr: through the standard library's logging they cost four times as much (a LogRecord, a formatter
    # running the chain again, stdlib json), 53 against 13 us a line, and a write's access line is one of them.
    # Other libraries' lines (aiohttp, asyncpg, dramatiq) still come through logging's handler below, rendered
    # by the same serializer; both write whole lines to the same stderr.
    direct: list[Any] = [*shared_processors, structlog.processors.format_exc_info, _redact_processor]
    factory: Any
    buffer = getattr(sys.stderr, "buffer", None)
    if settings.log_format != "console" and buffer is not None:
        direct.append(structlog.processors.JSONRenderer(serializer=_dumps))
        factory = structlog.BytesLoggerFactory(buffer)
    else:
        direct.append(renderer)
        factory = structlog.PrintLoggerFactory(sys.stderr)
    structlog.configure(
        processors=direct,
        logger_factory=factory,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            # Again, now that a traceback is text: exception messages quote URLs (with their passwords).
            _redact_processor,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    structlog.contextvars.bind_contextvars(process=process)


def get_logger(name: str) -> Any:
    """A structlog logger named ``name``."""
    return structlog.get_logger(name)
