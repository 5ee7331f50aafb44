"""The ledger's schema, as the append-only list of migrations that built it.

Schema changes are migrations: append a new script to ``MIGRATIONS``; never edit one
that has been committed (a ledger that ran it would never run the new text). The
ledger records how many have run (:mod:`digest_mail.ledger.db` applies them) and
refuses a file migrated by a newer digest-mail.

The scripts use plain types and constraints (TEXT, INTEGER, CHECK, REFERENCES) and no
SQLite-only syntax, so that the same list can build the schema on PostgreSQL. They keep
';' out of their comments: the runner splits a script on ';'.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: suppressions — who must never receive mail again.
    """
    CREATE TABLE suppressions (
        address     TEXT PRIMARY KEY,          -- normalized (casefolded) address
        reason      TEXT NOT NULL CHECK (reason IN ('unsubscribed', 'bounced', 'complained', 'manual')),
        source      TEXT NOT NULL DEFAULT '',  -- list name, bounce file, 'cli', 'one-click' …
        detail      TEXT NOT NULL DEFAULT '',  -- e.g. the SMTP reply or DSN status
        created_at  TEXT NOT NULL              -- ISO 8601 UTC
    );
    """,
    # 2: approvals and schedule runs: what may go out, and which weekly slot already went.
    """
    CREATE TABLE approvals (
        edition       TEXT PRIMARY KEY,        -- draft id, e.g. 2026-W48
        content_hash  TEXT NOT NULL,           -- Draft.content_hash when approved
        approved_at   TEXT NOT NULL,           -- ISO 8601 UTC
        approved_by   TEXT NOT NULL DEFAULT '',
        withdrawn_at  TEXT                     -- set by approve --withdraw
    );
    CREATE TABLE schedule_runs (
        schedule     TEXT NOT NULL,            -- [[schedule]] name
        slot         TEXT NOT NULL,            -- the cron slot, ISO 8601 UTC
        state        TEXT NOT NULL CHECK (state IN ('claimed', 'sending', 'sent', 'skipped', 'failed')),
        edition      TEXT,
        campaign_id  TEXT,
        claimed_at   TEXT NOT NULL,
        finished_at  TEXT,
        note         TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (schedule, slot)           -- the claim: one row per slot, ever
    );
    """,
    # 3: soft bounces (4.x.x): an address is suppressed after 3 within 30 days.
    """
    CREATE TABLE soft_bounces (
        address     TEXT NOT NULL,             -- normalized (casefolded) address
        message_id  TEXT NOT NULL,             -- the report's Message-ID: a re-import counts once
        status      TEXT NOT NULL,             -- DSN status, e.g. 4.2.2
        detail      TEXT NOT NULL DEFAULT '',  -- Diagnostic-Code
        source      TEXT NOT NULL DEFAULT '',  -- the mbox or Maildir it came from
        bounced_at  TEXT NOT NULL,             -- ISO 8601 UTC, from the report's Date
        PRIMARY KEY (address, message_id)
    );
    CREATE INDEX soft_bounces_by_time ON soft_bounces (address, bounced_at);
    """,
    # 4: campaigns and deliveries — every recipient's state, so a rerun never doubles.
    """
    CREATE TABLE campaigns (
        id               TEXT PRIMARY KEY,     -- '2026-W48/weekly', tests '2026-W48/test/<stamp>'
        edition          TEXT NOT NULL,
        list_name        TEXT NOT NULL,
        kind             TEXT NOT NULL CHECK (kind IN ('campaign', 'test')),
        content_hash     TEXT NOT NULL,
        state            TEXT NOT NULL CHECK (state IN ('snapshotting', 'sending', 'stopped', 'finished')),
        total            INTEGER NOT NULL DEFAULT 0,
        skipped_invalid  INTEGER NOT NULL DEFAULT 0,
        note             TEXT NOT NULL DEFAULT '',  -- why the last run stopped
        created_at       TEXT NOT NULL,
        started_at       TEXT,
        finished_at      TEXT
    );
    CREATE INDEX campaigns_by_edition ON campaigns (edition, list_name, created_at);
    CREATE TABLE deliveries (
        campaign_id  TEXT NOT NULL REFERENCES campaigns (id),
        seq          INTEGER NOT NULL,         -- row order in the snapshot, the queue order
        address      TEXT NOT NULL,            -- normalized (casefolded) key
        email        TEXT NOT NULL,            -- as written in the list
        name         TEXT NOT NULL DEFAULT '',
        state        TEXT NOT NULL CHECK (state IN ('queued', 'sending', 'sent', 'deferred', 'failed',
                                                     'suppressed', 'skipped', 'uncertain')),
        uncertain    INTEGER NOT NULL DEFAULT 0,  -- 1 once found in flight after a crash
        attempts     INTEGER NOT NULL DEFAULT 0,
        last_code    INTEGER,
        last_reply   TEXT NOT NULL DEFAULT '',
        message_id   TEXT NOT NULL DEFAULT '',
        updated_at   TEXT NOT NULL,
        PRIMARY KEY (campaign_id, address)
    );
    CREATE UNIQUE INDEX deliveries_by_seq ON deliveries (campaign_id, seq);
    CREATE INDEX deliveries_by_state ON deliveries (campaign_id, state, seq);
    """,
    # 5: the send path claims rows in seq order (deliveries_by_seq) and updates them by
    # rowid; a (campaign, state, seq) index cost two index updates per state change,
    # twice a message. Queries by state scan one campaign's rows, once a run.
    """
    DROP INDEX deliveries_by_state;
    """,
    # 6: one campaign may go to several lists, each address once: the lists of each
    # campaign (a campaign made before this had one, its list_name), and how many readers
    # a campaign left out because another campaign of its edition already had them.
    """
    CREATE TABLE campaign_lists (
        campaign_id  TEXT NOT NULL REFERENCES campaigns (id),
        list_name    TEXT NOT NULL,
        PRIMARY KEY (campaign_id, list_name)
    );
    CREATE INDEX campaign_lists_by_list ON campaign_lists (list_name);
    INSERT INTO campaign_lists (campaign_id, list_name) SELECT id, list_name FROM campaigns;
    ALTER TABLE campaigns ADD COLUMN already_received INTEGER NOT NULL DEFAULT 0;
    """,
    # 7: several senders on one campaign (a shared PostgreSQL ledger): each run of
    # 'send' is a sender, with its host, process and relay; a delivery row names the
    # sender that holds it (claimed, or waiting for its retry) or last answered it.
    # Whether a sender is alive is a session lock, not a column: it dies with its process.
    """
    ALTER TABLE deliveries ADD COLUMN sender TEXT NOT NULL DEFAULT '';
    CREATE TABLE senders (
        campaign_id  TEXT NOT NULL REFERENCES campaigns (id),
        sender       TEXT NOT NULL,            -- HOST/PID/random: one run of 'send'
        host         TEXT NOT NULL,
        pid          INTEGER NOT NULL,
        relay        TEXT NOT NULL DEFAULT '', -- the transport it sends through
        state        TEXT NOT NULL CHECK (state IN ('sending', 'finished', 'stopped')),
        note         TEXT NOT NULL DEFAULT '',
        started_at   TEXT NOT NULL,
        finished_at  TEXT,
        PRIMARY KEY (campaign_id, sender)
    );
    """,
]
