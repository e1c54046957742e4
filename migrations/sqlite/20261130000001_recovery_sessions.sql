-- Recoverable Socket.IO sessions (connection state recovery): one row per session, written when
-- it starts and when its rooms change, so any node can recover it after the one that held the
-- socket is gone. state = the server's JSON (rooms, the per-conversation ids it started from).
CREATE TABLE recovery_sessions (
    pid           TEXT     PRIMARY KEY,
    user_type     INTEGER  NOT NULL,
    user_id       INTEGER  NOT NULL,
    sid           TEXT     NOT NULL,
    state         TEXT     NOT NULL,
    -- Unix milliseconds; expired rows are never read and are purged periodically.
    expires_at_ms INTEGER  NOT NULL
);
CREATE INDEX recovery_sessions_expiry ON recovery_sessions (expires_at_ms);
