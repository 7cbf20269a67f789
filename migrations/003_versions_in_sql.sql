-- 003_versions_in_sql: versions by commit, and changes between any two versions, as table
-- macros (see docs/internals/cache-and-sync.md, "Versions and changes in SQL").
--
-- Commits are ordered by their place in a name's history (name_commits.seq), never by
-- time alone: two commits may share a time (ORCESTRA's history has two in one second).
-- items_at(ts) shows, for such a pair, the state after the later of the two; items_as_of
-- and changes are exact.
--
-- Each macro's overload with a name repeats the body of the one without: a DuckDB table
-- macro cannot call another overload of itself (as items_at in 001 does the same).

-- items_as_of (table MACRO) ----------------------------------------------------------------
-- items_as_of(commit_cid): the items as they were in that version, for every synced name
-- whose history holds the commit; items_as_of(commit_cid, name): of one name. Same columns
-- as the items view.
CREATE MACRO items_as_of(commit_cid) AS TABLE
    SELECT v.name, v.key, s.id, s.collection, s.datetime, s.start_datetime, s.end_datetime,
           s.bbox, s.platform, s.instruments, s.title, s.keywords,
           v.data_cid, v.path, v.item_cid, s.item
    FROM name_commits AS c
    JOIN item_versions AS v ON v.name = c.name
    JOIN name_commits AS f ON f.name = v.name AND f.cid = v.valid_from_commit
    LEFT JOIN name_commits AS t ON t.name = v.name AND t.cid = v.valid_to_commit
    JOIN stac_items AS s ON s.item_cid = v.item_cid
    WHERE c.cid = commit_cid AND f.seq <= c.seq AND (v.valid_to_commit IS NULL OR t.seq > c.seq),
(commit_cid, for_name) AS TABLE
    SELECT v.name, v.key, s.id, s.collection, s.datetime, s.start_datetime, s.end_datetime,
           s.bbox, s.platform, s.instruments, s.title, s.keywords,
           v.data_cid, v.path, v.item_cid, s.item
    FROM name_commits AS c
    JOIN item_versions AS v ON v.name = c.name
    JOIN name_commits AS f ON f.name = v.name AND f.cid = v.valid_from_commit
    LEFT JOIN name_commits AS t ON t.name = v.name AND t.cid = v.valid_to_commit
    JOIN stac_items AS s ON s.item_cid = v.item_cid
    WHERE c.name = for_name AND c.cid = commit_cid AND f.seq <= c.seq
      AND (v.valid_to_commit IS NULL OR t.seq > c.seq);
COMMENT ON MACRO TABLE items_as_of IS 'items_as_of(commit_cid) / items_as_of(commit_cid, name): the items (same columns as the items view) as they were in that version, of every name whose history holds it or of one name.';


-- changes (table MACRO) ----------------------------------------------------------------------
-- changes(from_version, to_version): every change of every version after from_version up to
-- and including to_version (commit CIDs of one name's history; none when to_version comes
-- first), one row per key and version that changed it, in history order:
--   name, key, op ('added', 'changed', 'removed'), old_data_cid, new_data_cid,
--   old_item_cid, new_item_cid, old_path, new_path, commit, time, seq
-- changes(from_version, to_version, name): of one name.
CREATE MACRO changes(from_version, to_version) AS TABLE (
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
    ORDER BY name, seq, key
);
COMMENT ON MACRO TABLE changes IS 'changes(from_version, to_version) / changes(from_version, to_version, name): every change (key, op added/changed/removed, old and new data CID, item CID and path, commit, time, seq) of every version after from_version up to to_version, in history order.';
