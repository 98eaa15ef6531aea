-- Read-model debts: a committed write whose write-through to Redis failed (Redis down, or the connection lost).
--
-- Until it is repaid, Redis may hold an older projection of the aggregate than a client has been acknowledged for.
-- Every API process repays the debts before it reads Redis again after its connection was lost or failed, and the
-- cache worker repays what it finds (shared/readmodel/debts.py): each is re-projected from PostgreSQL through the
-- projection's version compare-and-set, then its row is deleted if no newer debt replaced it meanwhile.
-- One row per aggregate: a newer failed write raises its version; `since` keeps the first.
CREATE TABLE readmodel_debts (
    aggregate    text        NOT NULL,
    aggregate_id text        NOT NULL,
    version      bigint      NOT NULL,
    since        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate, aggregate_id)
);
