-- 004_respellings: a data CID respelled is not a change (see docs/internals/cache-and-sync.md,
-- "Respelled CIDs").
--
-- A dataset whose data CID moves from a CIDv0 (Qm...) to the CIDv1 (bafy...) of the same
-- multihash, with the same path and an item that differs only where that CID is written,
-- has the same content. Its new row in item_versions is still opened (the spelling is kept
-- for display: the items view shows the new one), but it is marked respelled, and
-- changes() leaves it out. A sync marks the rows it adds; rows of a cache older than this
-- migration start NULL (not checked yet) and are checked when the cache is next opened
-- read-write (halodb/cache/respellings.py): a multihash cannot be read in SQL.

ALTER TABLE item_versions ADD COLUMN respelled BOOLEAN;
COMMENT ON COLUMN item_versions.respelled IS 'True when this version only respells the data CID of the version before it (Qm... to the bafy... of the same multihash, same path, item unchanged but for that CID): the same content, not a change. NULL: not checked yet.';


-- changes (table MACRO), as in 003, without respellings -------------------------------------
CREATE OR REPLACE MACRO changes(from_version, to_version) AS TABLE (
    WITH span AS (
        SELECT a.name, a.seq AS lo, b.seq AS hi
        FROM name_commits AS a JOIN name_commits AS b ON a.name = b.name
        WHERE a.cid = from_version AND b.cid = to_version AND a.seq < b.seq
    ), steps AS (
        SELECT n.name, n.cid, n.seq FROM name_commits AS n JOIN span ON n.name = span.name
        WHERE n.seq > span.lo AND n.seq <= span.hi
    ), opened AS (
        SELECT v.*, st.seq FROM item_versions AS v JOIN steps AS st ON v.name = st.name AND v.valid_from_commit = st.cid
    ), closed AS (
        SELECT v.*, st.seq FROM item_versions AS v JOIN steps AS st ON v.name = st.name AND v.valid_to_commit = st.cid
    )
    SELECT coalesce(o.name, c.name) AS name, coalesce(o.key, c.key) AS key,
           CASE WHEN c.key IS NULL THEN 'added' WHEN o.key IS NULL THEN 'removed' ELSE 'changed' END AS op,
           c.data_cid AS old_data_cid, o.data_cid AS new_data_cid, c.item_cid AS old_item_cid,
           o.item_cid AS new_item_cid, c.path AS old_path, o.path AS new_path,
           coalesce(o.valid_from_commit, c.valid_to_commit) AS commit,
           coalesce(o.valid_from, c.valid_to) AS time, coalesce(o.seq, c.seq) AS seq
    FROM opened AS o FULL OUTER JOIN closed AS c
      ON o.name = c.name AND o.key = c.key AND o.valid_from_commit = c.valid_to_commit
    WHERE o.respelled IS NOT TRUE
    ORDER BY name, seq, key
),
(from_version, to_version, for_name) AS TABLE (
    WITH span AS (
        SELECT a.name, a.seq AS lo, b.seq AS hi
        FROM name_commits AS a JOIN name_commits AS b ON a.name = b.name
        WHERE a.name = for_name AND a.cid = from_version AND b.cid = to_version AND a.seq < b.seq
    ), steps AS (
        SELECT n.name, n.cid, n.seq FROM name_commits AS n JOIN span ON n.name = span.name
        WHERE n.seq > span.lo AND n.seq <= span.hi
    ), opened AS (
        SELECT v.*, st.seq FROM item_versions AS v JOIN steps AS st ON v.name = st.name AND v.valid_from_commit = st.cid
    ), closed AS (
        SELECT v.*, st.seq FROM item_versions AS v JOIN steps AS st ON v.name = st.name AND v.valid_to_commit = st.cid
    )
    SELECT coalesce(o.name, c.name) AS name, coalesce(o.key, c.key) AS key,
           CASE WHEN c.key IS NULL THEN 'added' WHEN o.key IS NULL THEN 'removed' ELSE 'changed' END AS op,
           c.data_cid AS old_data_cid, o.data_cid AS new_data_cid, c.item_cid AS old_item_cid,
           o.item_cid AS new_item_cid, c.path AS old_path, o.path AS new_path,
           coalesce(o.valid_from_commit, c.valid_to_commit) AS commit,
           coalesce(o.valid_from, c.valid_to) AS time, coalesce(o.seq, c.seq) AS seq
    FROM opened AS o FULL OUTER JOIN closed AS c
      ON o.name = c.name AND o.key = c.key AND o.valid_from_commit = c.valid_to_commit
    WHERE o.respelled IS NOT TRUE
    ORDER BY name, seq, key
);
COMMENT ON MACRO TABLE changes IS 'changes(from_version, to_version) / changes(from_version, to_version, name): every change (key, op added/changed/removed, old and new data CID, item CID and path, commit, time, seq) of every version after from_version up to to_version, in history order. A data CID only respelled (item_versions.respelled) is not a change.';
