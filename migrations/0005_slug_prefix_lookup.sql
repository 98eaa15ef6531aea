-- The slug-collision lookup on create (`name-2`, `name-3`...) as an index range, not a scan of the slug index.
--
-- `starts_with(slug, base || '-')` cannot use the btree on slug (192 ms per colliding create at 1M products). The
-- lookup now asks for the range [base, base || '.') in byte order ('.' follows '-'), which this index serves
-- whatever the database's collation; the exact test stays beside it.
CREATE INDEX products_slug_pattern ON products (slug text_pattern_ops) WHERE deleted_at IS NULL;
CREATE INDEX categories_slug_pattern ON categories (slug text_pattern_ops) WHERE deleted_at IS NULL;
