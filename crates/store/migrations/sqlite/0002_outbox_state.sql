-- Where the outbox relay stands: every event up to `published` is on the bus; events up to
-- `compacted` are gone (a watch from before it gets 410 Gone).
CREATE TABLE outbox_state (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    published INTEGER NOT NULL,
    compacted INTEGER NOT NULL
);
INSERT INTO outbox_state (id, published, compacted) VALUES (1, 0, 0);
