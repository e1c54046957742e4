-- The conversation's newest message id, kept by every insert in the same statement, under the
-- conversation's row lock (`FOR NO KEY UPDATE`, taken before ids are drawn). The insert reads it
-- as each new message's predecessor (`prev`), which nodes carry with the message so that a
-- conversation's room owner can release it as soon as its predecessor is out (exact id order
-- across nodes). The lock returns the row's latest committed version, so the value is exact.
ALTER TABLE conversations ADD COLUMN last_message_id BIGINT NOT NULL DEFAULT 0;

UPDATE conversations c SET last_message_id = m.last
FROM (SELECT conversation_id, max(id) AS last FROM messages GROUP BY conversation_id) m
WHERE c.id = m.conversation_id;
