"""Read-your-writes across Redis outages: a write-through that failed is a debt, recorded in PostgreSQL, and no
process reads Redis again after its connection failed until every debt is repaid.

Once a write is acknowledged, no read may return an older version. The write-through (``api.commands``) makes that
true while Redis answers; when it fails (Redis down, a timeout, a lost connection, an error reply) the API records
the debt in ``readmodel_debts`` (migration 0005) before it answers, and marks its connection
:attr:`~shared.readmodel.client.FastRedis.suspect`. Every process's connection is suspect from its start and after
every connect, loss, timeout or distrust; a suspect connection is not read. Before reading Redis again a process
repays the debts (:meth:`Guard.settle`): one query for them, each re-projected from PostgreSQL's current state
through the same version compare-and-set as the write-through (a product with its category, whose product count
it changed), the repaid rows deleted (a newer debt of the same aggregate stays), and only then Redis is trusted,
if the connection did not change meanwhile. Until then reads go to PostgreSQL, as when Redis is down.

While Redis is healthy the hot path pays one attribute test, no PostgreSQL query. Listings are covered because a
projection maintains them: the sorted sets hold the product's member and its hash the bytes, and each projection
bumps the generation counters of the cached pages. The cache worker sweeps the debts too (:meth:`Guard.sweep`:
when its own connection is suspect, and every :data:`SWEEP_SECONDS`), so debts never pile up.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

import asyncpg

from shared.errors import DomainError
from shared.logs import get_logger
from shared.models import Category, Product, User, Written
from shared.readmodel.client import REDIS_ERRORS, FastRedis
from shared.readmodel.project import Entity, project
from shared.store import categories as cat_repo
from shared.store import debts as debt_repo
from shared.store import products as prod_repo
from shared.store import records as rec_repo
from shared.store import users as user_repo
from shared.store.debts import Debt
from shared.store.pool import SCHEMA_MISSING, UNAVAILABLE, connection

log = get_logger("readmodel.debts")

#: Debts read (and repaid) per query; a longer list takes several.
BATCH: Final = 500
#: The cache worker looks for debts at least this often (seconds), whatever its connection did.
SWEEP_SECONDS: Final = 5.0
#: What repaying may fail with besides Redis: PostgreSQL unreachable or saturated, the table not migrated yet.
_FAILURES: Final[tuple[type[BaseException], ...]] = (*REDIS_ERRORS, DomainError, *UNAVAILABLE, *SCHEMA_MISSING)


def debt_of(written: Written) -> Debt:
    """The debt a failed write-through of ``written`` leaves."""
    e = written.entity
    if isinstance(e, User):
        return Debt("user", e.username, e.version)
    kind = "product" if isinstance(e, Product) else "category" if isinstance(e, Category) else "record"
    return Debt(kind, str(e.id), e.version)


async def _load(conn: asyncpg.Connection, debt: Debt) -> tuple[Entity, bool] | None:
    """The aggregate's current state (live or deleted), or None if PostgreSQL has no such row."""
    if debt.aggregate == "user":
        u = await user_repo.get(conn, debt.aggregate_id)
        return None if u is None else (u, False)
    ident = int(debt.aggregate_id)
    if debt.aggregate == "product":
        return await prod_repo.get_any_by_id(conn, ident)
    if debt.aggregate == "category":
        return await cat_repo.get_any_by_id(conn, ident)
    return await rec_repo.get_any(conn, ident)


async def repay(
    pool: asyncpg.Pool, wait: float, redis: FastRedis, media_url: str, also: list[Debt] | None = None
) -> int:
    """Re-project every debt (and ``also``: debts this process could not record) from PostgreSQL and delete the
    rows repaid; how many. Raises what PostgreSQL or Redis raise (then nothing is deleted that was not repaid)."""
    repaid = 0
    extra = list(also or ())
    while True:
        async with connection(pool, wait) as conn:
            owed = await debt_repo.owed(conn, BATCH) + extra
            states: list[tuple[Debt, tuple[Entity, bool] | None]] = [(d, await _load(conn, d)) for d in owed]
            # A product's write changed its category's product count: project that too, from the same reads.
            categories = {
                s[0].category_id: await cat_repo.get_any_by_id(conn, s[0].category_id)
                for d, s in states
                if s is not None and isinstance(s[0], Product)
            }
        paid: list[Debt] = []
        for debt, state in states:
            if state is not None:
                entity, deleted = state
                await project(redis.run_script, entity, media_url, deleted=deleted)
                debt = Debt(debt.aggregate, debt.aggregate_id, max(debt.version, entity.version))
            paid.append(debt)
        for found in categories.values():
            if found is not None:
                await project(redis.run_script, found[0], media_url, deleted=found[1])
        async with connection(pool, wait) as conn:
            await debt_repo.settle(conn, paid)
        repaid += len(paid)
        if len(owed) - len(extra) < BATCH:
            return repaid
        extra = []


class Guard:
    """One process's read-your-writes guard over its Redis connection (see the module docstring)."""

    def __init__(self, redis: FastRedis, pool: asyncpg.Pool, wait: float, media_url: str) -> None:
        self.redis = redis
        self.pool = pool
        self.wait = wait
        self.media_url = media_url
        #: Debts being recorded now: until they are in PostgreSQL a repayment could miss them.
        self._recording = 0
        #: Debts that could not be recorded (PostgreSQL failed too): repaid by this process.
        self._unrecorded: list[Debt] = []
        self._repaying: asyncio.Future[bool] | None = None
        self._swept = 0.0

    async def owe(self, written: Written) -> None:
        """A write-through of ``written`` failed: distrust Redis at once, then record the debt durably."""
        self.redis.distrust()
        debt = debt_of(written)
        self._recording += 1
        try:
            async with connection(self.pool, self.wait) as conn:
                await debt_repo.record(conn, debt.aggregate, debt.aggregate_id, debt.version)
        except _FAILURES as exc:
            # The write is committed: answer it. This process repays the debt itself before it trusts Redis
            # again; another process's next read may not know of it (logged, so an operator can rebuild).
            self._unrecorded.append(debt)
            log.warning("readmodel_debt_unrecorded", aggregate=debt.aggregate, id=debt.aggregate_id, error=repr(exc))
        finally:
            self._recording -= 1

    async def settle(self) -> bool:
        """Whether Redis may be read: at once if the connection is trusted, else after repaying the debts (one
        repayment at a time per process; callers meanwhile wait for it). False: read PostgreSQL instead."""
        if not self.redis.suspect:
            return True
        if self._recording:
            return False
        return await self._once()

    async def sweep(self) -> None:
        """The cache worker's turn: repay if its connection is suspect or :data:`SWEEP_SECONDS` passed."""
        now = time.monotonic()
        if self.redis.suspect or now - self._swept >= SWEEP_SECONDS:
            self._swept = now
            await self._once()

    def _once(self) -> asyncio.Future[bool]:
        if self._repaying is None or self._repaying.done():
            self._repaying = asyncio.ensure_future(self._repay())
        return asyncio.shield(self._repaying)

    async def _repay(self) -> bool:
        also, self._unrecorded = self._unrecorded, []
        try:
            # Connected first: the debts must be read after the connection they vouch for was made.
            await self.redis.execute("PING")
            epoch = self.redis.epoch
            n = await repay(self.pool, self.wait, self.redis, self.media_url, also)
        except _FAILURES as exc:
            self._unrecorded.extend(also)
            log.debug("readmodel_debts_unpaid", error=type(exc).__name__)
            return False
        if n:
            log.info("readmodel_debts_repaid", count=n)
        return not self._recording and self.redis.trust(epoch)
