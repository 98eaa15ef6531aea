-- Inactive products: public listings leave them out, and a client lists them only when it asks (`is_active=false`).
-- They are a few per cent of a catalog, so without an index of their own, finding (and counting, up to the
-- numbered pages' window of 10,000) them would read every live product. The listing names them with the fixed
-- condition `NOT p.is_active` (never a parameter), so this partial index serves generic plans too.
CREATE INDEX products_inactive_created ON products (created_at, id) WHERE deleted_at IS NULL AND NOT is_active;
