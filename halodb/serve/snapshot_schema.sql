-- The schema of a serving snapshot (halodb/serve/snapshot.py): one name's whole synced
-- history, copied from the cache file into an in-memory DuckDB database, shaped for the
-- STAC API's queries. Every request reads one snapshot; a new one replaces it whole when
-- the name moves (halodb serve --watch), so a request never sees half a sync.

-- commits: the name's history, seq 0 = oldest, the head has the largest seq.
CREATE TABLE commits (
    seq     INTEGER PRIMARY KEY,
    cid     VARCHAR NOT NULL UNIQUE,
    time    TIMESTAMPTZ NOT NULL,
    parents VARCHAR[] NOT NULL,
    author  VARCHAR NOT NULL,
    message VARCHAR NOT NULL
);

-- items: one row per distinct item block of the history (alias i in queries).
CREATE TABLE items (
    item_cid       VARCHAR NOT NULL,
    id             VARCHAR,
    collection     VARCHAR,
    datetime       TIMESTAMPTZ,
    start_datetime TIMESTAMPTZ,
    end_datetime   TIMESTAMPTZ,
    t_start        TIMESTAMPTZ,     -- the item's time span: datetime, or start_datetime ..
    t_end          TIMESTAMPTZ,     -- .. end_datetime (each falls back on the other)
    xmin DOUBLE, ymin DOUBLE, xmax DOUBLE, ymax DOUBLE,  -- 2D bbox (NULL when the item has none)
    platform       VARCHAR,
    instruments    VARCHAR[],
    title          VARCHAR,
    description    VARCHAR,
    keywords       VARCHAR[],
    mission        VARCHAR,         -- properties.mission (STAC common metadata)
    cloud_cover    DOUBLE,          -- properties."eo:cloud_cover"
    text           VARCHAR,         -- lower-case title, description and keywords: for q
    geometry       VARCHAR,         -- the GeoJSON geometry as JSON text (NULL when null)
    wkb            BLOB             -- the same geometry as WKB (shapely), for exact spatial tests
    -- (the whole item's JSON is kept beside the database, in Snapshot.item_json, by rowid)
);

-- versions: which item each dataset key had in which commits (alias v in queries):
-- valid in the commits with from_seq <= seq < to_seq (to_seq NULL: still current). A row that
-- only respells its data CID (cache item_versions.respelled) keeps the content number of the
-- row before it: two versions of a key with one content number are the same content.
CREATE TABLE versions (
    key      VARCHAR NOT NULL,
    item_cid VARCHAR NOT NULL,
    data_cid VARCHAR,
    path     VARCHAR,
    from_seq INTEGER NOT NULL,
    to_seq   INTEGER,
    respelled BOOLEAN NOT NULL, -- only respells the data CID of the row before it (Qm... to bafy...)
    content  INTEGER NOT NULL   -- the key's rows with one content number hold the same content
);
