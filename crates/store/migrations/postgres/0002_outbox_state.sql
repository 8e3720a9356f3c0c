-- Where the outbox relay stands: every event up to `published` is on the bus; events up to
-- `compacted` are gone (a watch from before it gets 410 Gone).
CREATE TABLE outbox_state (
    id        INT    PRIMARY KEY CHECK (id = 1),
    published BIGINT NOT NULL,
    compacted BIGINT NOT NULL
);
INSERT INTO outbox_state (id, published, compacted) VALUES (1, 0, 0);
