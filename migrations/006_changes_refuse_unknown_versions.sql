-- 006_changes_refuse_unknown_versions: changes() names what it does not know (see
-- docs/internals/cache-and-sync.md, "Versions and changes in SQL").
--
-- A commit CID that no synced name holds (a typo, a date where a commit is expected), or a
-- name the cache does not hold, made changes() return no rows, which reads as "nothing
-- changed". Now it is an error naming the argument. Versions in the wrong order still give
-- no rows, as documented. The body is 004's; a guard row that is never returned evaluates
-- DuckDB's error() when an argument is unknown.

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
    UNION ALL
    SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
    FROM (SELECT CASE
            WHEN NOT EXISTS (SELECT 1 FROM name_commits WHERE cid = from_version)
              THEN error('changes(): from_version ' || from_version || ' is not a commit of a synced name (commit CIDs, not times: see name_commits)')
            WHEN NOT EXISTS (SELECT 1 FROM name_commits WHERE cid = to_version)
              THEN error('changes(): to_version ' || to_version || ' is not a commit of a synced name (commit CIDs, not times: see name_commits)')
          END AS bad)
    WHERE bad IS NOT NULL
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
    UNION ALL
    SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
    FROM (SELECT CASE
            WHEN NOT EXISTS (SELECT 1 FROM name_commits WHERE name = for_name AND cid = from_version)
              THEN error('changes(): from_version ' || from_version || ' is not a commit of ' || for_name || ' in the cache (commit CIDs, not times: see name_commits)')
            WHEN NOT EXISTS (SELECT 1 FROM name_commits WHERE name = for_name AND cid = to_version)
              THEN error('changes(): to_version ' || to_version || ' is not a commit of ' || for_name || ' in the cache (commit CIDs, not times: see name_commits)')
          END AS bad)
    WHERE bad IS NOT NULL
    ORDER BY name, seq, key
);
COMMENT ON MACRO TABLE changes IS 'changes(from_version, to_version) / changes(from_version, to_version, name): every change (key, op added/changed/removed, old and new data CID, item CID and path, commit, time, seq) of every version after from_version up to to_version, in history order. A data CID only respelled (item_versions.respelled) is not a change. A commit or name the cache does not hold is an error.';
