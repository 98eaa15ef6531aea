-- The last numbered suffix handed out per generated slug base (`spade-2`, `spade-3`...), per kind of resource.
--
-- Before, a create whose name collided read every live slug `base-*` to pick the first free number: a read that
-- grew with the number of collisions, and concurrent creates of one name all picked the same number, failed on the
-- unique index and read again (the bench measured 63-106 colliding creates/s, p50 0.5-0.8 s, at every table size).
-- Now one row per base hands each create the next number at once. It starts past the highest suffix in use
-- (read once, when the row is made), so it needs no backfill.
CREATE TABLE slug_suffixes (
    kind text    NOT NULL,
    base text    NOT NULL,
    last integer NOT NULL,
    PRIMARY KEY (kind, base)
);
