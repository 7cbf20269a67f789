-- 007_items_at_refuses_unknown_names: items_at(ts, name) names a name it does not know.
--
-- A name the cache does not hold (a typo, or a name not synced yet) made items_at(ts, name)
-- return no rows, which reads as "that name had no datasets then". Now it is an error
-- naming the name, as changes() does since 006. The bodies are 001's; the guard row is
-- never returned: it evaluates DuckDB's error() when the name is unknown.

CREATE OR REPLACE MACRO items_at(ts) AS TABLE
    SELECT v.name, v.key, s.id, s.collection, s.datetime, s.start_datetime, s.end_datetime,
           s.bbox, s.platform, s.instruments, s.title, s.keywords,
           v.data_cid, v.path, v.item_cid, s.item
    FROM item_versions AS v
    JOIN stac_items AS s ON s.item_cid = v.item_cid
    WHERE v.valid_from <= CAST(ts AS TIMESTAMPTZ)
      AND (v.valid_to IS NULL OR CAST(ts AS TIMESTAMPTZ) < v.valid_to),
(ts, for_name) AS TABLE
    SELECT v.name, v.key, s.id, s.collection, s.datetime, s.start_datetime, s.end_datetime,
           s.bbox, s.platform, s.instruments, s.title, s.keywords,
           v.data_cid, v.path, v.item_cid, s.item
    FROM item_versions AS v
    JOIN stac_items AS s ON s.item_cid = v.item_cid
    WHERE v.name = for_name
      AND v.valid_from <= CAST(ts AS TIMESTAMPTZ)
      AND (v.valid_to IS NULL OR CAST(ts AS TIMESTAMPTZ) < v.valid_to)
    UNION ALL
    SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
    FROM (SELECT CASE
            WHEN NOT EXISTS (SELECT 1 FROM sync_state WHERE name = for_name)
              THEN error('items_at(): ' || for_name || ' is not a name synced into this cache (see sync_state)')
          END AS bad)
    WHERE bad IS NOT NULL;
COMMENT ON MACRO TABLE items_at IS 'items_at(ts) / items_at(ts, name): the items (same columns as the items view) as they were at timestamp ts, of every name or of one name. A name the cache does not hold is an error.';
