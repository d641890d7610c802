"""Tables of the views file. Columns are listed once here and used by reader and writer."""

from __future__ import annotations

from pathlib import Path

from projections import database

# Kept in the file (PRAGMA user_version). Raise it with any change below: views built by
# another release are then rebuilt from the log instead of being misread.
SCHEMA_VERSION = 10

CASE_COLUMNS = (
    "aggregate_id", "case_id", "state", "state_since", "arrival", "attempt", "detected_at",
    "updated_at",
    "file_count", "total_bytes", "fingerprint", "host", "slot", "label", "remote_dir",
    "task_id", "task_created_at", "started_at", "seen_running_at", "not_before",
    "timeout_hours",
    "cancel_requested", "kill_cause", "failure", "exit_code", "infra_failures", "results_dir",
    "reason", "remote_folders", "progress_done", "progress_total", "progress_at", "node",
)  # fmt: skip
SLOT_COLUMNS = (
    "aggregate_id", "host", "name", "state", "updated_at", "case_id", "attempt", "task_id",
    "task_label", "task_created_at", "reason",
)  # fmt: skip
HOST_COLUMNS = (
    "aggregate_id", "name", "address", "state", "updated_at", "unreachable_since",
    "last_outage_seconds", "reason",
)  # fmt: skip
REFUSAL_COLUMNS = ("aggregate_id", "name_repr", "reason", "refused_at")
CASE_NAME_COLUMNS = ("aggregate_id", "name_key", "case_id")
ALARM_COLUMNS = (
    "aggregate_id", "number", "key", "kind", "subject", "message", "state", "raised_at",
    "case_id", "host", "acknowledged_by", "acknowledged_at", "cleared_at", "reason",
)  # fmt: skip
NOTIFICATION_COLUMNS = (
    "aggregate_id", "number", "channel", "kind", "dedup_key", "fact_at", "case_id",
    "notice_state", "category", "host", "alarm_id", "subject", "log_tail", "notice_reason",
    "delivered", "attempts", "last_attempt_at", "last_detail", "delivered_at",
)  # fmt: skip
EVENT_LOG_COLUMNS = ("aggregate_id", "log_id")  # one row: the log these views were built from

# Columns holding times, stored as ISO 8601 text (the reader parses them back).
TIME_COLUMNS = frozenset({
    "state_since", "detected_at", "updated_at", "task_created_at", "started_at",
    "seen_running_at", "not_before",
    "unreachable_since", "refused_at", "raised_at", "acknowledged_at", "cleared_at",
    "fact_at", "last_attempt_at", "delivered_at", "progress_at",
})  # fmt: skip

TABLES = {
    "cases": CASE_COLUMNS,
    "slots": SLOT_COLUMNS,
    "hosts": HOST_COLUMNS,
    "refusals": REFUSAL_COLUMNS,
    "case_names": CASE_NAME_COLUMNS,
    "event_log": EVENT_LOG_COLUMNS,
    "alarms": ALARM_COLUMNS,
    "notifications": NOTIFICATION_COLUMNS,
}

TABLE_STATEMENTS = [
    *(
        f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(columns)}, UNIQUE (aggregate_id))"
        for table, columns in TABLES.items()
    ),
    # The events that concern a case, for `mqi history`: its own, and the slot and host
    # events about it.
    "CREATE TABLE IF NOT EXISTS case_links (case_id TEXT, notification_id INTEGER,"
    " PRIMARY KEY (case_id, notification_id)) WITHOUT ROWID",
    # Kept from the start even by a replay: host events ask which cases run on the host.
    "CREATE INDEX IF NOT EXISTS cases_by_host ON cases (host) WHERE host IS NOT NULL",
    # The daemon reads the alarms not cleared every cycle; `mqi ack N` finds one by number.
    "CREATE INDEX IF NOT EXISTS alarms_standing ON alarms (state) WHERE state != 'cleared'",
    "CREATE UNIQUE INDEX IF NOT EXISTS alarms_by_number ON alarms (number)",
    # Housekeeping reads the ended cases that left folders on the nodes.
    "CREATE INDEX IF NOT EXISTS cases_leftovers ON cases (state_since)"
    " WHERE remote_folders IS NOT NULL",
    # The daemon's sender reads the undelivered notifications.
    "CREATE INDEX IF NOT EXISTS notifications_due ON notifications (number) WHERE delivered = 0",
]
# Created after the tables are filled when a replay builds a fresh file (faster).
INDEX_STATEMENTS = [
    "CREATE UNIQUE INDEX IF NOT EXISTS cases_by_case_id ON cases (case_id)",
    "CREATE INDEX IF NOT EXISTS cases_by_state ON cases (state, arrival)",
    # `mqi web` pages through every case, newest first.
    "CREATE INDEX IF NOT EXISTS cases_by_arrival ON cases (arrival)",
]


def is_current(path: Path) -> bool:
    """Whether the views file at ``path`` has this release's schema (a damaged file has
    none: it is rebuilt like another release's)."""
    return database.user_version(path) == SCHEMA_VERSION
