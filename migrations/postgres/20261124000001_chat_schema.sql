-- chatwire schema: users, conversations, participants (with read pointers), messages.
-- user_type / sender_type: 1 = brand, 2 = influencer.

CREATE TABLE users (
    user_type     SMALLINT    NOT NULL CHECK (user_type IN (1, 2)),
    id            BIGINT      NOT NULL CHECK (id > 0),
    username      TEXT        NOT NULL,
    first_name    TEXT,
    last_name     TEXT,
    profile_image TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_type, id)
);

CREATE TABLE conversations (
    id         BIGSERIAL   PRIMARY KEY,
    type       TEXT        NOT NULL CHECK (type IN ('direct', 'group')),
    title      TEXT,
    -- "<type>:<id>|<type>:<id>" of the two users, smaller first: a 1:1 exists once per pair.
    direct_key TEXT        UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Creation time; latest activity is GREATEST(updated_at, newest message created_at), read at list time.
    updated_at TIMESTAMPTZ(3) NOT NULL DEFAULT now(),
    CHECK ((type = 'direct') = (direct_key IS NOT NULL))
);

CREATE TABLE participants (
    conversation_id      BIGINT   NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_type            SMALLINT NOT NULL,
    user_id              BIGINT   NOT NULL,
    -- Read pointer: every message with id <= this one is read by this participant.
    last_read_message_id BIGINT   NOT NULL DEFAULT 0,
    -- Hidden from this participant's list until a new message arrives.
    hidden               BOOLEAN  NOT NULL DEFAULT false,
    PRIMARY KEY (conversation_id, user_type, user_id),
    FOREIGN KEY (user_type, user_id) REFERENCES users (user_type, id)
);
-- A user's conversation list.
CREATE INDEX participants_by_user ON participants (user_type, user_id, conversation_id);
-- Un-hiding on a new message only touches hidden rows.
CREATE INDEX participants_hidden ON participants (conversation_id) WHERE hidden;

CREATE TABLE messages (
    -- Ids come from the sequence (globally unique and increasing); every lookup also names the
    -- conversation, so the primary key (conversation_id, id) doubles as the history index.
    id              BIGSERIAL,
    -- No foreign key: the insert checks participation (which implies the conversation exists)
    -- and conversations are never deleted; a per-row RI trigger would halve batch throughput.
    conversation_id BIGINT      NOT NULL,
    sender_type     SMALLINT    NOT NULL,
    sender_id       BIGINT      NOT NULL,
    message_type    TEXT        NOT NULL CHECK (message_type IN ('text', 'image', 'file')),
    content         TEXT        NOT NULL,
    attachment_url  TEXT,
    attachment_name TEXT,
    created_at      TIMESTAMPTZ(3) NOT NULL DEFAULT now(),
    -- The client's tempId ("n:5" / "s:5"); NULL when the send had none.
    temp_id_key     TEXT,
    -- History pages, last message, unread counts (id range per conversation): one index, not two.
    PRIMARY KEY (conversation_id, id)
);
-- Idempotent sends: one row per (sender, conversation, tempId).
CREATE UNIQUE INDEX messages_idempotency ON messages (sender_type, sender_id, conversation_id, temp_id_key);
