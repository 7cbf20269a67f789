-- 005_partial_sync: a name synced only in part (see docs/internals/cache-and-sync.md,
-- "Partial sync").
--
-- `halodb sync NAME --collection C` / `--prefix P` materializes only the datasets whose keys
-- start with the prefix ("C/" for a collection), with their whole history. sync_state.scope
-- records that prefix (NULL: the whole index). A sync asked for another scope than the
-- cache holds rebuilds the name's rows; `halodb at` answers from the cache only for keys in
-- the scope, and asks the DAG for the rest.
ALTER TABLE sync_state ADD COLUMN scope VARCHAR;
COMMENT ON COLUMN sync_state.scope IS 'Key prefix the name was synced for (sync --collection/--prefix): only datasets whose keys start with it are in the cache. NULL: the whole index.';
