//! Schema migrations, applied in order at open. `PRAGMA user_version` records how many have run.

/// Each entry upgrades the schema by one version; never edit a published entry, append a new one.
pub(crate) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE account_config (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    default_service_sid TEXT NOT NULL,
    default_messaging_service_sid TEXT,
    default_inactive_timer INTEGER,
    default_closed_timer INTEGER
);

CREATE TABLE services (
    id INTEGER PRIMARY KEY,
    sid TEXT NOT NULL UNIQUE,
    friendly_name TEXT NOT NULL,
    creator_role_sid TEXT NOT NULL,
    participant_role_sid TEXT NOT NULL,
    user_role_sid TEXT NOT NULL,
    reachability_enabled INTEGER NOT NULL DEFAULT 0,
    date_created INTEGER NOT NULL,
    date_updated INTEGER NOT NULL
);

CREATE TABLE roles (
    id INTEGER PRIMARY KEY,
    sid TEXT NOT NULL UNIQUE,
    service_sid TEXT NOT NULL,
    friendly_name TEXT NOT NULL,
    kind TEXT NOT NULL,
    permissions TEXT NOT NULL,
    date_created INTEGER NOT NULL,
    date_updated INTEGER NOT NULL
);
CREATE INDEX roles_by_service ON roles(service_sid, id);

CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    sid TEXT NOT NULL UNIQUE,
    service_sid TEXT NOT NULL,
    identity TEXT NOT NULL,
    friendly_name TEXT,
    attributes TEXT NOT NULL,
    role_sid TEXT,
    date_created INTEGER NOT NULL,
    date_updated INTEGER NOT NULL,
    UNIQUE (service_sid, identity)
);

CREATE TABLE conversations (
    id INTEGER PRIMARY KEY,
    sid TEXT NOT NULL UNIQUE,
    service_sid TEXT NOT NULL,
    friendly_name TEXT,
    unique_name TEXT,
    attributes TEXT NOT NULL,
    messaging_service_sid TEXT,
    state TEXT NOT NULL,
    state_updated INTEGER NOT NULL,
    created_by TEXT,
    email_address TEXT,
    email_name TEXT,
    date_created INTEGER NOT NULL,
    date_updated INTEGER NOT NULL,
    timer_inactive INTEGER,
    timer_closed INTEGER,
    date_inactive INTEGER,
    date_closed INTEGER,
    -- The next message index to hand out; never decreases, so indices are never reused.
    next_message_index INTEGER NOT NULL DEFAULT 0,
    -- How many messages were deleted; with next_message_index this gives the exact message count.
    deleted_messages INTEGER NOT NULL DEFAULT 0,
    UNIQUE (service_sid, unique_name)
);
CREATE INDEX conversations_by_service ON conversations(service_sid, id);
CREATE INDEX conversations_inactive_due ON conversations(date_inactive) WHERE date_inactive IS NOT NULL;
CREATE INDEX conversations_closed_due ON conversations(date_closed) WHERE date_closed IS NOT NULL;

CREATE TABLE participants (
    id INTEGER PRIMARY KEY,
    sid TEXT NOT NULL UNIQUE,
    conversation_id INTEGER NOT NULL,
    conversation_sid TEXT NOT NULL,
    service_sid TEXT NOT NULL,
    identity TEXT,
    binding_type TEXT,
    binding_address TEXT,
    binding_proxy TEXT,
    binding_projected TEXT,
    binding_name TEXT,
    binding_level TEXT,
    attributes TEXT NOT NULL,
    role_sid TEXT,
    last_read_index INTEGER,
    last_read_timestamp INTEGER,
    notification_level TEXT NOT NULL DEFAULT 'default',
    date_created INTEGER NOT NULL,
    date_updated INTEGER NOT NULL,
    UNIQUE (conversation_id, identity)
);
CREATE INDEX participants_by_conversation ON participants(conversation_id, id);
CREATE INDEX participants_by_identity ON participants(service_sid, identity) WHERE identity IS NOT NULL;
CREATE INDEX participants_by_address ON participants(service_sid, binding_address) WHERE binding_address IS NOT NULL;

CREATE TABLE messages (
    conversation_id INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    sid TEXT NOT NULL,
    author TEXT NOT NULL,
    body TEXT,
    subject TEXT,
    attributes TEXT NOT NULL,
    participant_sid TEXT,
    content_sid TEXT,
    date_created INTEGER NOT NULL,
    date_updated INTEGER,
    PRIMARY KEY (conversation_id, idx)
) WITHOUT ROWID;
CREATE UNIQUE INDEX messages_by_sid ON messages(sid);

-- Indices of deleted messages: unread counts subtract those above the horizon, which stays cheap because
-- deletions are rare compared to messages.
CREATE TABLE deleted_messages (
    conversation_id INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, idx)
) WITHOUT ROWID;

CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY,
    sid TEXT NOT NULL UNIQUE,
    friendly_name TEXT NOT NULL,
    secret TEXT NOT NULL,
    date_created INTEGER NOT NULL
);

-- The event log: one stream per conversation or user, sequence numbers without gaps.
CREATE TABLE streams (
    stream TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL
) WITHOUT ROWID;

-- `id` orders the whole log by commit, which is what the live feed tails; (stream, seq) is what clients
-- resume from.
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    data TEXT NOT NULL,
    at INTEGER NOT NULL,
    UNIQUE (stream, seq)
);

-- Idempotency keys of sent messages: a retried send with the same key returns the stored message.
CREATE TABLE message_keys (
    conversation_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    message_sid TEXT NOT NULL,
    PRIMARY KEY (conversation_id, key)
) WITHOUT ROWID;
"#,
    r#"
-- Who caused each event, so webhooks can report it and skip REST changes made without
-- X-Twilio-Webhook-Enabled.
ALTER TABLE events ADD COLUMN service_sid TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN source TEXT NOT NULL DEFAULT 'SYSTEM';
ALTER TABLE events ADD COLUMN client_identity TEXT;
ALTER TABLE events ADD COLUMN webhooks INTEGER NOT NULL DEFAULT 0;

-- Account-level (scope 'account') and service-level (scope = service SID) webhook settings.
CREATE TABLE webhook_settings (
    scope TEXT PRIMARY KEY,
    method TEXT NOT NULL,
    filters TEXT NOT NULL,
    pre_webhook_url TEXT,
    post_webhook_url TEXT,
    target TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE conversation_webhooks (
    id INTEGER PRIMARY KEY,
    sid TEXT NOT NULL UNIQUE,
    conversation_id INTEGER NOT NULL,
    conversation_sid TEXT NOT NULL,
    service_sid TEXT NOT NULL,
    target TEXT NOT NULL,
    url TEXT,
    method TEXT NOT NULL,
    filters TEXT NOT NULL,
    triggers TEXT NOT NULL,
    flow_sid TEXT,
    replay_after INTEGER,
    date_created INTEGER NOT NULL,
    date_updated INTEGER NOT NULL
);
CREATE INDEX conversation_webhooks_by_conversation ON conversation_webhooks(conversation_id);

-- The webhook outbox: requests planned from the event log, deleted once delivered. `dead` entries ran out of
-- attempts and stay for inspection.
CREATE TABLE webhook_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id INTEGER NOT NULL,
    url TEXT NOT NULL,
    method TEXT NOT NULL,
    params TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt INTEGER NOT NULL,
    dead INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX webhook_outbox_due ON webhook_outbox(dead, next_attempt);

-- How far the event log has been planned into the outbox.
CREATE TABLE webhook_cursor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    log_id INTEGER NOT NULL
);
INSERT INTO webhook_cursor(id, log_id) SELECT 1, COALESCE(MAX(id), 0) FROM events;
"#,
    r#"
-- Aggregated delivery receipt counts of a message (JSON), kept with the message so pages need no extra reads.
ALTER TABLE messages ADD COLUMN delivery TEXT;

-- One row per message and non-chat recipient, written with the message. Queued rows with next_attempt set
-- are the channel dispatcher's outbox.
CREATE TABLE delivery_receipts (
    id INTEGER PRIMARY KEY,
    sid TEXT NOT NULL UNIQUE,
    conversation_id INTEGER NOT NULL,
    conversation_sid TEXT NOT NULL,
    service_sid TEXT NOT NULL,
    message_sid TEXT NOT NULL,
    participant_sid TEXT NOT NULL,
    channel TEXT NOT NULL,
    channel_message_sid TEXT,
    status TEXT NOT NULL,
    error_code INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt INTEGER,
    last_error TEXT,
    date_created INTEGER NOT NULL,
    date_updated INTEGER NOT NULL
);
CREATE INDEX receipts_by_message ON delivery_receipts(message_sid, id);
CREATE INDEX receipts_due ON delivery_receipts(next_attempt) WHERE next_attempt IS NOT NULL;
CREATE INDEX receipts_by_channel_message ON delivery_receipts(channel_message_sid) WHERE channel_message_sid IS NOT NULL;
CREATE INDEX participants_non_chat ON participants(conversation_id) WHERE binding_type IS NOT NULL;
CREATE INDEX participants_by_lower_address ON participants(lower(binding_address)) WHERE binding_address IS NOT NULL;

CREATE TABLE address_configurations (
    id INTEGER PRIMARY KEY,
    sid TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    address TEXT NOT NULL,
    lower_address TEXT NOT NULL UNIQUE,
    friendly_name TEXT,
    auto_creation TEXT NOT NULL,
    address_country TEXT,
    date_created INTEGER NOT NULL,
    date_updated INTEGER NOT NULL
);
"#,
    r#"
-- Uploaded files; the bytes live in the media store under their SHA-256, so one content is stored once.
CREATE TABLE media (
    id INTEGER PRIMARY KEY,
    sid TEXT NOT NULL UNIQUE,
    service_sid TEXT NOT NULL,
    content_type TEXT NOT NULL,
    filename TEXT,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    author TEXT,
    category TEXT NOT NULL,
    conversation_sid TEXT,
    message_sid TEXT,
    date_created INTEGER NOT NULL
);
CREATE INDEX media_by_message ON media(message_sid) WHERE message_sid IS NOT NULL;

-- Descriptors of a message's media (JSON array), kept with the message so pages need no extra reads.
ALTER TABLE messages ADD COLUMN media TEXT;
"#,
    r#"
-- The webhook delivery history: one row per attempt, written with the outbox entry's new state; pruned by age
-- and count as attempts are added. AUTOINCREMENT: ids are never reused, so pages keyed by them stay stable.
CREATE TABLE webhook_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id INTEGER NOT NULL,
    event_id INTEGER NOT NULL,
    url TEXT NOT NULL,
    method TEXT NOT NULL,
    event_type TEXT,
    conversation_sid TEXT,
    attempt INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    error TEXT,
    next_retry INTEGER,
    at INTEGER NOT NULL
);
CREATE INDEX webhook_attempts_by_time ON webhook_attempts(at);
CREATE INDEX webhook_attempts_by_conversation ON webhook_attempts(conversation_sid, id);

-- When each outbox entry was planned (unknown for older entries).
ALTER TABLE webhook_outbox ADD COLUMN date_created INTEGER;

-- The recipient's address, kept with the receipt: the participant may leave, the receipt stays.
ALTER TABLE delivery_receipts ADD COLUMN address TEXT;
UPDATE delivery_receipts SET address =
    (SELECT binding_address FROM participants p WHERE p.sid = delivery_receipts.participant_sid);
-- Operators list receipts across conversations, newest first, often only the failed ones.
CREATE INDEX receipts_by_status ON delivery_receipts(status, id);
CREATE INDEX receipts_failed ON delivery_receipts(id) WHERE status IN ('failed', 'undelivered');
CREATE INDEX receipts_by_conversation ON delivery_receipts(conversation_sid, id);
"#,
];
