-- chatwire schema (SQLite): same tables and keys as migrations/postgres.
-- user_type / sender_type: 1 = brand, 2 = influencer. Times are Unix milliseconds.

CREATE TABLE users (
    user_type     INTEGER NOT NULL CHECK (user_type IN (1, 2)),
    id            INTEGER NOT NULL CHECK (id > 0),
    username      TEXT    NOT NULL,
    first_name    TEXT,
    last_name     TEXT,
    profile_image TEXT,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (user_type, id)
) WITHOUT ROWID;

CREATE TABLE conversations (
    id         INTEGER PRIMARY KEY,
    type       TEXT    NOT NULL CHECK (type IN ('direct', 'group')),
    title      TEXT,
    direct_key TEXT    UNIQUE,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    CHECK ((type = 'direct') = (direct_key IS NOT NULL))
);

CREATE TABLE participants (
    conversation_id      INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_type            INTEGER NOT NULL,
    user_id              INTEGER NOT NULL,
    last_read_message_id INTEGER NOT NULL DEFAULT 0,
    hidden               INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_type, user_id),
    FOREIGN KEY (user_type, user_id) REFERENCES users (user_type, id)
) WITHOUT ROWID;
CREATE INDEX participants_by_user ON participants (user_type, user_id, conversation_id);
CREATE INDEX participants_hidden ON participants (conversation_id) WHERE hidden;

CREATE TABLE messages (
    id              INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL,
    sender_type     INTEGER NOT NULL,
    sender_id       INTEGER NOT NULL,
    message_type    TEXT    NOT NULL CHECK (message_type IN ('text', 'image', 'file')),
    content         TEXT    NOT NULL,
    attachment_url  TEXT,
    attachment_name TEXT,
    created_at      INTEGER NOT NULL,
    temp_id_key     TEXT
);
CREATE INDEX messages_history ON messages (conversation_id, id DESC);
CREATE UNIQUE INDEX messages_idempotency ON messages (sender_type, sender_id, conversation_id, temp_id_key);
