"""``python -m api [--host H] [--port P] [--workers N]`` and ``python -m api keys create|list|revoke|rotate``."""

from __future__ import annotations

import argparse
import socket
import sys

from api.server import serve, serve_many
from shared.settings import Settings, with_cursor_secret


def _parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m api", description="Stockroom HTTP API")
    parser.add_argument("--host", default=settings.api_host)
    parser.add_argument("--port", type=int, default=settings.api_port)
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)")
    return parser


def main(argv: list[str]) -> int:
    if argv[:1] == ["keys"]:
        from api.key_commands import main as keys_main

        return keys_main(argv[1:])
    settings = Settings()
    args = _parser(settings).parse_args(argv)
    if args.workers < 1:
        sys.stderr.write("--workers must be at least 1\n")
        return 2
    # Resolved once, before any worker process starts: they all sign cursors with this one key.
    try:
        settings = with_cursor_secret(settings)
    except OSError as exc:
        sys.stderr.write(f"CURSOR_SECRET is unset and {settings.cursor_secret_file} cannot be kept ({exc}): set it\n")
        return 2
    if args.workers == 1:
        serve(settings, args.host, args.port, reuse_port=False)
        return 0
    # Bind once here so a port in use fails loudly before any child starts.
    with socket.create_server((args.host, args.port), reuse_port=True):
        pass
    return serve_many(settings, args.host, args.port, args.workers)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
