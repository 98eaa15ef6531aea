"""``python -m migrations``: apply pending migrations to ``DATABASE_URL``."""

from __future__ import annotations

import argparse
import asyncio
import sys

from migrations.runner import MigrationError, migrate
from shared.logs import configure_logging, get_logger
from shared.settings import Settings


def main(argv: list[str] | None = None) -> int:
    # No options: `--help` prints this and applies nothing; anything else is refused (exit 2), never ignored.
    argparse.ArgumentParser(prog="python -m migrations", description=__doc__).parse_args(argv)
    settings = Settings()
    configure_logging(settings, "migrations")
    log = get_logger("migrations")
    try:
        applied = asyncio.run(migrate(settings.database_url))
    except MigrationError as exc:
        log.error("migration_failed", error=str(exc))
        return 1
    log.info("migrations_applied", applied=applied, count=len(applied))
    return 0


if __name__ == "__main__":
    sys.exit(main())
