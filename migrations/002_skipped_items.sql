-- 002_skipped_items: the item blocks a sync could not materialize (see docs/internals/cache-and-sync.md).
--
-- A sync skips an item block that verifies against its CID but is not a STAC item the cache
-- can hold (not DAG-CBOR, nested deeper than 64 levels, larger than 1 MiB, not a map with
-- type 'Feature', an id and properties): the rest of the version is materialized, the
-- dataset's version is still recorded in item_versions (its key, data CID and path come
-- from the index, which verified), but it has no row in stac_items, so the items view and
-- items_at() leave it out. This table says which blocks and why, so that every later sync
-- still reports them. A missing or corrupt block is never skipped: it fails the sync.
CREATE TABLE skipped_items (
    item_cid VARCHAR PRIMARY KEY,   -- CID of the item block
    reason   VARCHAR NOT NULL,      -- why it could not be materialized
    seen_at  TIMESTAMPTZ NOT NULL   -- when a sync last met it
);
COMMENT ON TABLE skipped_items IS 'Item blocks a sync verified but could not materialize as STAC items (why, and when last met); their versions are in item_versions but not in the items view. Which names and keys: join item_versions on item_cid.';
COMMENT ON COLUMN skipped_items.item_cid IS 'CID of the item block (item_versions.item_cid).';
COMMENT ON COLUMN skipped_items.reason IS 'Why the block could not be materialized (too deep, too large, not a STAC item, not DAG-CBOR).';
COMMENT ON COLUMN skipped_items.seen_at IS 'When a sync last met the block (UTC).';
