-- Each older service has its own collection of records: `/picus` documents and `/data` items no longer list
-- each other's. Rows written before this migration (and everything `POST /api/records` writes) are in the
-- collection 'records'; `/api/records` reads and lists records of every collection (README, "Records").
--
-- The `/data` item's "id" is the client's and unique among live `/data` items (409 on a duplicate).
ALTER TABLE records ADD COLUMN collection text NOT NULL DEFAULT 'records';

CREATE INDEX records_collection_live ON records (collection, id) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX records_data_item_id ON records ((data ->> 'id')) WHERE collection = 'data' AND deleted_at IS NULL;
