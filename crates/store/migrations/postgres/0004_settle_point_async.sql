-- The settle point's transaction writes nothing, so its commit need not wait for the WAL
-- to reach disk (synchronous_commit off for it alone): the relay takes one per poll, and a
-- flushed commit each time cost concurrent writers measurably.
CREATE OR REPLACE FUNCTION syncsets_settle_point(OUT last bigint, OUT called boolean, OUT xid text)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    SELECT s.last_value, s.is_called INTO last, called FROM rv_seq s;
    xid := pg_current_xact_id()::text;
END
$$;
