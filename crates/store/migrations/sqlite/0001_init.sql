-- Objects of every kind and logical cluster. `data` is the object's JSON without
-- metadata.resourceVersion (the `rv` column is the truth); for Secrets it is a stub and the
-- whole object is in `sealed` (AES-256-GCM).
CREATE TABLE objects (
    id        INTEGER PRIMARY KEY,
    cluster   TEXT    NOT NULL,
    resource  TEXT    NOT NULL,
    namespace TEXT    NOT NULL,
    name      TEXT    NOT NULL,
    rv        INTEGER NOT NULL,
    data      TEXT    NOT NULL,
    sealed    BLOB
);
CREATE UNIQUE INDEX objects_key ON objects (cluster, resource, namespace, name);

-- The label index: label selectors drive lookups from here instead of scanning a kind.
CREATE TABLE labels (
    obj_id   INTEGER NOT NULL,
    cluster  TEXT    NOT NULL,
    resource TEXT    NOT NULL,
    key      TEXT    NOT NULL,
    value    TEXT    NOT NULL,
    PRIMARY KEY (obj_id, key)
) WITHOUT ROWID;
CREATE INDEX labels_selector ON labels (cluster, resource, key, value, obj_id);

-- The transactional outbox: one row per change, written in the same transaction.
CREATE TABLE events (
    rv          INTEGER PRIMARY KEY,
    cluster     TEXT    NOT NULL,
    resource    TEXT    NOT NULL,
    namespace   TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    type        TEXT    NOT NULL,
    data        TEXT    NOT NULL,
    sealed      BLOB,
    labels      TEXT    NOT NULL,
    prev_labels TEXT,
    created_at  INTEGER NOT NULL
);

-- resourceVersion: one store-wide counter, bumped inside each write transaction (SQLite has
-- a single writer, so the counter is gapless and in commit order).
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO counters (name, value) VALUES ('rv', 0);
