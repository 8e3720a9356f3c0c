-- resourceVersion comes from a sequence (a counter row would serialise every commit: 0.3x
-- the insert rate measured here). Values are unique and increase with allocation time, but
-- transactions may commit out of order or roll back, leaving gaps. Every writer takes its
-- transaction id *before* its resourceVersion, so a reader can tell when all versions up to
-- a point are settled: read the sequence and the running transactions together, then wait
-- for those transactions to end (see `Postgres::settle`).
CREATE SEQUENCE rv_seq;

CREATE FUNCTION syncsets_next_rv() RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_current_xact_id();
    RETURN nextval('rv_seq');
END
$$;

CREATE TABLE objects (
    cluster   TEXT   NOT NULL,
    resource  TEXT   NOT NULL,
    namespace TEXT   NOT NULL,
    name      TEXT   NOT NULL,
    rv        BIGINT NOT NULL,
    labels    JSONB  NOT NULL DEFAULT '{}',
    data      JSONB  NOT NULL,
    sealed    BYTEA,
    PRIMARY KEY (cluster, resource, namespace, name)
);
-- Label selectors: containment (=, in) and key existence use this index.
CREATE INDEX objects_labels ON objects USING GIN (labels);

-- The transactional outbox.
CREATE TABLE events (
    rv          BIGINT PRIMARY KEY,
    cluster     TEXT   NOT NULL,
    resource    TEXT   NOT NULL,
    namespace   TEXT   NOT NULL,
    name        TEXT   NOT NULL,
    type        TEXT   NOT NULL,
    data        JSONB  NOT NULL,
    sealed      BYTEA,
    labels      JSONB  NOT NULL,
    prev_labels JSONB,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
