"""Where the event log lives and how its events are encoded: the msgspec codec
(``codec``) and the SQLite store with the log's identity checks (``sqlite``)."""
