-- Stockroom's first schema: catalog, records, birthdays, outbox, idempotency and API keys.

CREATE TABLE categories (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug        text NOT NULL,
    name        text NOT NULL,
    description text,
    parent_id   bigint REFERENCES categories (id),
    version     integer NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);
-- Slugs are unique among live rows only: a soft-deleted slug may be taken again.
CREATE UNIQUE INDEX categories_slug_live ON categories (slug) WHERE deleted_at IS NULL;
CREATE INDEX categories_parent ON categories (parent_id) WHERE deleted_at IS NULL;

CREATE TABLE products (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug        text NOT NULL,
    name        text NOT NULL,
    description text,
    price       numeric(14, 2) NOT NULL CHECK (price >= 0),
    currency    char(3) NOT NULL DEFAULT 'EUR',
    category_id bigint NOT NULL REFERENCES categories (id),
    stock       integer NOT NULL DEFAULT 0 CHECK (stock >= 0),
    attributes  jsonb NOT NULL DEFAULT '{}'::jsonb,
    is_active   boolean NOT NULL DEFAULT true,
    -- Image state: none | pending | ready | failed; the original's storage key and the thumbnails.
    image_status     text NOT NULL DEFAULT 'none' CHECK (image_status IN ('none', 'pending', 'ready', 'failed')),
    image_original   text,
    image_thumbnails jsonb NOT NULL DEFAULT '{}'::jsonb,
    image_error      text,
    search      tsvector GENERATED ALWAYS AS (
                    to_tsvector('english', coalesce(name, '') || ' ' || coalesce(description, ''))) STORED,
    version     integer NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);
CREATE UNIQUE INDEX products_slug_live ON products (slug) WHERE deleted_at IS NULL;
-- One index per keyset order of GET /api/products, overall and by category.
CREATE INDEX products_created ON products (created_at, id) WHERE deleted_at IS NULL;
CREATE INDEX products_price ON products (price, id) WHERE deleted_at IS NULL;
CREATE INDEX products_name ON products (name, id) WHERE deleted_at IS NULL;
CREATE INDEX products_category_created ON products (category_id, created_at, id) WHERE deleted_at IS NULL;
CREATE INDEX products_category_price ON products (category_id, price, id) WHERE deleted_at IS NULL;
CREATE INDEX products_category_name ON products (category_id, name, id) WHERE deleted_at IS NULL;
CREATE INDEX products_search ON products USING gin (search);

CREATE TABLE records (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    data        jsonb NOT NULL,
    version     integer NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);
CREATE INDEX records_live ON records (id) WHERE deleted_at IS NULL;

CREATE TABLE users (
    -- Usernames are case-insensitive: the key is the lower-cased name.
    username      text PRIMARY KEY,
    -- As written in the last PUT, for listings.
    name          text NOT NULL,
    date_of_birth date NOT NULL,
    version       integer NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX users_birthday ON users ((extract(month FROM date_of_birth)), (extract(day FROM date_of_birth)));

CREATE TABLE outbox (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    type         text NOT NULL,
    aggregate    text NOT NULL,
    aggregate_id text NOT NULL,
    version      integer NOT NULL,
    payload      jsonb NOT NULL DEFAULT '{}'::jsonb,
    request_id   text,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    sent_at      timestamptz
);
-- Unsent rows are found by status, never by a high-water mark: ids are assigned at insert, not at commit.
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;
CREATE INDEX outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;

-- One NOTIFY per inserting statement; PostgreSQL delivers it at commit and folds duplicates.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

CREATE TABLE idempotency_keys (
    owner        text NOT NULL,
    key          text NOT NULL,
    request_hash text NOT NULL,
    status       integer,
    body         bytea,
    location     text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

CREATE TABLE api_keys (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text NOT NULL,
    key_hash   text NOT NULL UNIQUE,
    scope      text NOT NULL CHECK (scope IN ('write', 'admin')),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
