//! The database schema as numbered migrations, applied in order and recorded in
//! `PRAGMA user_version`. Never edit a shipped migration: add the next one.

/// Migration `n` (1-based) is `MIGRATIONS[n - 1]`.
pub const MIGRATIONS: &[&str] = &[
    // 1: items, attempts, and the daemon's heartbeat.
    r#"
    CREATE TABLE items (
        id               INTEGER PRIMARY KEY,
        order_number     TEXT    NOT NULL UNIQUE,
        branch           TEXT    NOT NULL,
        reason           TEXT    NOT NULL,
        cancelled_at     TEXT    NOT NULL,
        customer         TEXT,
        extra            TEXT,
        idempotency_key  TEXT    NOT NULL UNIQUE,
        source           TEXT    NOT NULL,
        state            TEXT    NOT NULL
                         CHECK (state IN ('pending', 'in_flight', 'processing', 'done', 'failed')),
        attempts         INTEGER NOT NULL DEFAULT 0,
        last_code        TEXT,
        last_message     TEXT,
        next_at          INTEGER NOT NULL,
        lease_until      INTEGER,
        processing_since INTEGER,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL
    ) STRICT;
    -- The claim walks this index: due items of one state, oldest due first.
    CREATE INDEX items_due ON items (state, next_at);

    CREATE TABLE attempts (
        id           INTEGER PRIMARY KEY,
        item_id      INTEGER NOT NULL REFERENCES items (id),
        number       INTEGER NOT NULL,
        started_at   INTEGER NOT NULL,
        duration_ms  INTEGER NOT NULL,
        outcome      TEXT    NOT NULL CHECK (outcome IN ('success', 'processing', 'failure')),
        code         TEXT,
        kind         TEXT    NOT NULL,
        http_status  INTEGER,
        message      TEXT,
        body_excerpt TEXT,
        -- A circuit-breaker probe; never counts toward the item's attempts.
        probe        INTEGER NOT NULL DEFAULT 0,
        -- Whether this attempt counted toward retry.max_attempts.
        counted      INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    CREATE INDEX attempts_item ON attempts (item_id, number);
    CREATE INDEX attempts_started ON attempts (started_at);

    CREATE TABLE daemon (
        id           INTEGER PRIMARY KEY CHECK (id = 1),
        pid          INTEGER NOT NULL,
        version      TEXT    NOT NULL,
        started_at   INTEGER NOT NULL,
        heartbeat_at INTEGER NOT NULL,
        stopped_at   INTEGER,
        -- The circuit breaker's state in pt-BR, as the daemon last described it.
        gate         TEXT
    ) STRICT;
    "#,
    // 2: how many requests each item has had (probes and polls included), kept on the item so
    // recording an attempt needs no look-up in `attempts` (and `list` can show it).
    r#"
    ALTER TABLE items ADD COLUMN sent INTEGER NOT NULL DEFAULT 0;
    -- The last attempt's number, so numbering goes on from it. Delivered items whose attempts
    -- the history purge already deleted start at 0.
    UPDATE items SET sent = (SELECT MAX(number) FROM attempts WHERE attempts.item_id = items.id)
        WHERE EXISTS (SELECT 1 FROM attempts WHERE attempts.item_id = items.id);
    "#,
    // 3: what the request mapping reads from the answers: the API's receipt (a protocol or
    // cancellation number, `[api.response] receipt_path`) on the attempt that carried it and on
    // the item, and the URL an asynchronous API said to poll (`async_poll = "location"`).
    r#"
    ALTER TABLE attempts ADD COLUMN receipt TEXT;
    ALTER TABLE items ADD COLUMN receipt TEXT;
    ALTER TABLE items ADD COLUMN poll_url TEXT;
    "#,
    // 4: the last run of each polled `[[source]]`, for `status` and `check`.
    r#"
    CREATE TABLE sources (
        name         TEXT    PRIMARY KEY,
        last_run_at  INTEGER NOT NULL,
        duration_ms  INTEGER NOT NULL,
        ok           INTEGER NOT NULL,
        -- Rows the command printed, and how many of them were new to the queue (0 on failure).
        rows         INTEGER NOT NULL,
        new_items    INTEGER NOT NULL,
        -- Why the run failed, with an excerpt of the command's stderr (secrets masked).
        error        TEXT,
        last_ok_at   INTEGER,
        -- Failed runs in a row.
        failures     INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    "#,
    // 5: figures for `status`, `/metrics` and the status page that need no walk over a million
    // items or ten million attempts: the oldest pending item (a partial index, cheap to keep:
    // only pending rows are in it) and attempts per hour and result, counted by the daemon's
    // chores from the attempts recorded since `attempt_hours_done.last_attempt` (triggers kept
    // them exactly but cost a quarter of the daemon's CPU per item: docs/PERFORMANCE.md).
    r#"
    CREATE INDEX items_pending_since ON items (created_at) WHERE state = 'pending';

    -- `result` is the code of a failure, else the outcome (`success`, `processing`).
    CREATE TABLE attempt_hours (
        hour   INTEGER NOT NULL,
        result TEXT    NOT NULL,
        count  INTEGER NOT NULL,
        PRIMARY KEY (hour, result)
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE attempt_hours_done (
        id           INTEGER PRIMARY KEY CHECK (id = 1),
        last_attempt INTEGER NOT NULL
    ) STRICT;
    INSERT INTO attempt_hours (hour, result, count)
        SELECT started_at / 3600000, COALESCE(code, outcome), COUNT(*) FROM attempts GROUP BY 1, 2;
    INSERT INTO attempt_hours_done (id, last_attempt) VALUES (1, COALESCE((SELECT MAX(id) FROM attempts), 0));
    "#,
    // 6: the lease token of an `in_flight` item: each claim gets its own, and an attempt record
    // or a release lands only on the claim it belongs to. A record delayed past its lease (a
    // slow commit) can then never touch the item's next claim, which the lease state alone
    // (`state = 'in_flight'`) could not tell apart.
    // The daemon's client certificate's expiry (mutual TLS), for `status` and the page.
    r#"
    ALTER TABLE items ADD COLUMN lease_token INTEGER;
    ALTER TABLE daemon ADD COLUMN certificate_expires_at INTEGER;
    "#,
];

/// The schema version this build writes.
pub fn current_version() -> i64 {
    MIGRATIONS.len() as i64
}
