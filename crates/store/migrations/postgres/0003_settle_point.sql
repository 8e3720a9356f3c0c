-- A settle point: the last resourceVersion handed out, then a fresh transaction id X.
-- Every transaction holding a version up to that one took its own id before the version,
-- hence before X; once no transaction with an id below X is running (in a later snapshot),
-- all those versions are committed or abandoned, and visible to every later snapshot.
-- (A snapshot's list of running transactions alone is not enough: it omits transactions
-- whose ids are above every completed one.)
CREATE FUNCTION syncsets_settle_point(OUT last bigint, OUT called boolean, OUT xid text)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    SELECT s.last_value, s.is_called INTO last, called FROM rv_seq s;
    xid := pg_current_xact_id()::text;
END
$$;
