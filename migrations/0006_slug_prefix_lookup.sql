-- The slug-collision lookup on create (`name-2`, `name-3`...) as an index range, not a scan of the slug index.
--
-- `starts_with(slug, base || '-')` cannot use a btree (192 ms per colliding create at 1M products). The lookup
-- asks for the range [base, base || '.') in byte order ('.' follows '-') with the `~>=~` / `~<~` operators, which
-- a `text_pattern_ops` index serves whatever the database's collation. Such an index answers `slug = $1` as well,
-- so it replaces the unique slug index (same name, same uniqueness) instead of adding a second one.
CREATE UNIQUE INDEX products_slug_live_bytes ON products (slug text_pattern_ops) WHERE deleted_at IS NULL;
DROP INDEX products_slug_live;
ALTER INDEX products_slug_live_bytes RENAME TO products_slug_live;

CREATE UNIQUE INDEX categories_slug_live_bytes ON categories (slug text_pattern_ops) WHERE deleted_at IS NULL;
DROP INDEX categories_slug_live;
ALTER INDEX categories_slug_live_bytes RENAME TO categories_slug_live;
