"""This machine's files: the one-daemon lock, the owner-only logs, the board of what the
daemon does now (for `mqi status`), quiet repeats of failures, crash injection for tests."""
