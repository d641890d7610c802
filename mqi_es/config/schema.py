"""The shape of the configuration: frozen msgspec Structs that refuse unknown keys.

Two layers. ``ConfigFile`` is what a file may contain, legacy keys included, so that
msgspec's error paths are paths in the file. ``Config`` is the normalised result the
rest of the program reads: one list of hosts, every local path absolute.

Value ranges live here (msgspec ``Meta``); rules spanning several keys live in
``rules.py``. Every default here must itself pass those rules: the built-in defaults
are a valid ``Config``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from mqi_es.core.run_progress import MOQUI_PATTERN

# Patterns, with the wording used when a value does not match. \Z, not $: $ would let
# a trailing newline through.
HOST_PATTERN = r"^[A-Za-z0-9_:\[][A-Za-z0-9_.:%\[\]-]*\Z"
USER_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.@-]*\Z"
GROUP_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\Z"
EXECUTABLE_PATTERN = r"^[A-Za-z0-9_./~+][A-Za-z0-9_./~+-]*\Z"
FILE_NAME_PATTERN = r"^(?!\.\.?\Z)[^/\\\x00-\x1f]+\Z"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*\Z"

PATTERN_HELP: dict[str, str] = {
    HOST_PATTERN: "letters, digits and _ . : % [ ] -, not starting with - . or %",
    USER_PATTERN: "letters, digits and _ . @ -, not starting with - or .",
    GROUP_PATTERN: "letters, digits and _ . -, not starting with - or .",
    EXECUTABLE_PATTERN: "one word (letters, digits and _ . / ~ + -), not starting with -",
    FILE_NAME_PATTERN: "a file name without / \\ or control characters",
    ENV_NAME_PATTERN: "a variable name: letters, digits and _, not starting with a digit",
}

HostWord = Annotated[str, Meta(pattern=HOST_PATTERN, max_length=255)]
GroupName = Annotated[str, Meta(pattern=GROUP_PATTERN, max_length=64)]
Executable = Annotated[str, Meta(pattern=EXECUTABLE_PATTERN, max_length=4096)]
EnvName = Annotated[str, Meta(pattern=ENV_NAME_PATTERN, max_length=128)]


class Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """Base of every section: unknown keys are errors, values never change after loading."""


class HostSettings(Section, kw_only=True):
    """Everything about one GPU node except its groups (shared by ``hosts`` and ``hpc``)."""

    # An empty name (the default; an explicit "" fails the pattern) means "use host".
    name: HostWord = ""
    host: HostWord
    user: Annotated[str, Meta(pattern=USER_PATTERN, max_length=64)] | None = None
    port: Annotated[int, Meta(ge=1, le=65535)] | None = None
    key_file: Path | None = None
    known_hosts: Path = Path("~/.ssh/known_hosts")
    trust_on_first_use: bool = False
    # Remote paths stay text: "~" must reach the node unexpanded (it is the remote home).
    remote_base_dir: Annotated[str, Meta(min_length=1, max_length=4096)] = "~/mqi_cases"
    # Checked by mqi_es.pueue.RemoteCommandTemplate (placeholders, shell quoting).
    remote_command: Annotated[str, Meta(min_length=1, max_length=8192)]
    pueue: Executable = "pueue"
    connect_timeout_seconds: Annotated[float, Meta(gt=0, le=300)] = 10.0
    command_timeout_seconds: Annotated[float, Meta(gt=0, le=3600)] = 30.0
    keepalive_interval_seconds: Annotated[float, Meta(gt=0, le=600)] = 5.0
    reconnect_backoff_cap_seconds: Annotated[float, Meta(gt=0, le=3600)] = 60.0
    max_parallel_transfers: Annotated[int, Meta(ge=1, le=64)] = 8
    # The node's file system takes names that differ only in letter case for one (a
    # case-insensitive share): such case names are then refused as clashes.
    folds_case: bool = False
    # The simulation's environment: pueue gives a task only what its `pueue add` had, and
    # that runs under `env -i`. Checked by mqi_es.pueue.TaskEnvironment.
    task_env: dict[EnvName, Annotated[str, Meta(max_length=8192)]] = {}
    task_env_from_node: tuple[EnvName, ...] = ()
    backend: Literal["pueue", "slurm"] = "pueue"

    def __post_init__(self) -> None:
        if not self.name:
            msgspec.structs.force_setattr(self, "name", self.host)


# One word of sbatch's: an option with its value, never one we set ourselves (rules.py).
SBATCH_OPTION_PATTERN = r"^--[a-z][a-z0-9-]*(=[A-Za-z0-9_.,:/@%+=-]+)?\Z"
PATTERN_HELP[SBATCH_OPTION_PATTERN] = (
    "one option such as --account=physics or --qos=clinical (letters, digits and _ . , : / @ "
    "% + = - in its value)"
)


class SlurmConfig(Section, kw_only=True):
    """A Slurm cluster reached through its login node: each slot stands for one job of
    ours, queued or running; Slurm chooses the GPU."""

    partition: GroupName
    slots: Annotated[int, Meta(ge=1, le=1024)] = 1
    gres: Annotated[str, Meta(pattern=r"^([A-Za-z0-9_]+(:[A-Za-z0-9_]+)*(,|\Z))+\Z")] = "gpu:1"
    # Default: main_loop.running_case_timeout_hours plus a margin, so that our own kill
    # comes first and Slurm's TIMEOUT only ends a job we could not kill.
    time_limit_minutes: Annotated[int, Meta(ge=1, le=525600)] | None = None
    sbatch_options: tuple[
        Annotated[str, Meta(pattern=SBATCH_OPTION_PATTERN, max_length=256)], ...
    ] = ()
    accounting: Literal["auto", "sacct", "none"] = "auto"


class HostConfig(HostSettings, kw_only=True):
    """One GPU node (each of its pueue groups stands for one GPU), or a Slurm cluster."""

    groups: Annotated[tuple[GroupName, ...], Meta(max_length=256)] = ()
    slurm: SlurmConfig | None = None


class ScannerConfig(Section, kw_only=True):
    watch_path: Path = Path("var/incoming")
    quiescence_period_seconds: Annotated[float, Meta(gt=0, le=86400)] = 10.0
    force_polling: bool = False
    poll_delay_ms: Annotated[int, Meta(ge=50, le=60000)] = 1000
    ready_marker: Annotated[str, Meta(pattern=FILE_NAME_PATTERN, max_length=255)] | None = None
    rescan_interval_seconds: Annotated[float, Meta(gt=0, le=86400)] = 30.0


class MainLoopConfig(Section, kw_only=True):
    sleep_interval_seconds: Annotated[float, Meta(gt=0, le=3600)] = 10.0
    running_case_timeout_hours: Annotated[float, Meta(gt=0, le=720)] = 24.0
    max_attempts: Annotated[int, Meta(ge=1, le=100)] = 3
    missing_task_grace_polls: Annotated[int, Meta(ge=1, le=1000)] = 3
    retry_backoff_seconds: Annotated[float, Meta(gt=0, le=86400)] = 30.0
    retry_backoff_cap_seconds: Annotated[float, Meta(gt=0, le=86400)] = 600.0
    kill_confirm_timeout_seconds: Annotated[float, Meta(gt=0, le=3600)] = 120.0
    max_clock_skew_seconds: Annotated[float, Meta(gt=0, le=86400)] = 60.0
    # How often the tails of a host's running tasks are read for their progress (one remote
    # command per host for all of them; 0: never), and the line that tells it: a regular
    # expression with the named groups done and total (checked by mqi_es.config.rules).
    progress_interval_seconds: Annotated[float, Meta(ge=0, le=86400)] = 30.0
    progress_pattern: Annotated[str, Meta(min_length=1, max_length=1000)] = MOQUI_PATTERN


class ResultsConfig(Section, kw_only=True):
    # Relative to the remote case folder. MOQUI writes RT Dose DICOM, or raw dose with an
    # optional MetaImage header (OutputFormat), into the OutputDir of moqui_tps.in: the
    # defaults expect `output`, so the plan and CT sent with the case are never fetched back.
    globs: Annotated[tuple[Annotated[str, Meta(min_length=1)], ...], Meta(min_length=1)] = (
        "output/**/*.dcm",
        "output/**/*.raw",
        "output/**/*.mhd",
        "output/**/*.mha",
    )
    local_path: Path = Path("var/results")


class SqliteDatabase(Section, kw_only=True, tag_field="store", tag="sqlite"):
    """The event store in SQLite: one file beside the views (the default)."""

    path: Path = Path("var/events.sqlite")
    views_path: Path = Path("var/views.sqlite")

    @property
    def data_dir(self) -> Path:
        """The daemon's local folder: its lock, live file and web token."""
        return self.path.parent

    @property
    def where(self) -> str:
        return str(self.path)


DbWord = Annotated[str, Meta(pattern=USER_PATTERN, max_length=63)]


class PostgresDsn(Section, kw_only=True):
    """Where the PostgreSQL server is, and as whom to connect (never with a password)."""

    host: HostWord
    port: Annotated[int, Meta(ge=1, le=65535)] = 5432
    dbname: DbWord
    user: DbWord


class PostgresDatabase(Section, kw_only=True, tag_field="store", tag="postgres"):
    """The event log in PostgreSQL, shared by a leader and its standbys; each daemon keeps
    its own views (SQLite, at ``views_path``) fed from it."""

    dsn: PostgresDsn
    # The password's file (its first line); none: libpq's PGPASSFILE or ~/.pgpass.
    password_file: Path | None = None
    views_path: Path = Path("var/views.sqlite")
    connect_timeout_seconds: Annotated[float, Meta(ge=1, le=300)] = 5.0

    @property
    def data_dir(self) -> Path:
        return self.views_path.parent

    @property
    def where(self) -> str:
        dsn = self.dsn
        return f"postgresql://{dsn.user}@{dsn.host}:{dsn.port}/{dsn.dbname}"


DatabaseConfig = SqliteDatabase | PostgresDatabase


class HaConfig(Section, kw_only=True):
    """One leader and its standbys (``database.store: postgres``): a standby takes over
    once the leader has not renewed its lease for ``takeover_seconds``."""

    takeover_seconds: Annotated[float, Meta(ge=2, le=600)] = 15.0
    name: Annotated[str, Meta(pattern=GROUP_PATTERN, max_length=64)] | None = None  # hostname


class LoggingConfig(Section, kw_only=True):
    path: Path = Path("var/logs/mqi.log")
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    max_bytes: Annotated[int, Meta(ge=65536, le=2**30)] = 10 * 2**20
    backups: Annotated[int, Meta(ge=0, le=1000)] = 5


StallMinutes = Annotated[float, Meta(gt=0, le=525600)] | None  # None: never a stall alarm


class StallConfig(Section, kw_only=True):
    """Minutes a case may stay in each state before it is called stalled; a running case
    is covered by its timeout, a killing one by the kill confirmation."""

    waiting: StallMinutes = 1440.0
    held: StallMinutes = 60.0
    submitting: StallMinutes = 30.0
    queued: StallMinutes = 60.0
    retrieving: StallMinutes = 60.0


class AlarmsConfig(Section, kw_only=True):
    stall_minutes: StallConfig = StallConfig()
    host_down_minutes: Annotated[float, Meta(gt=0, le=525600)] = 10.0
    # Cycles further apart than this: the daemon's loop was held (cycle_overdue).
    cycle_overdue_minutes: Annotated[float, Meta(gt=0, le=1440)] = 5.0
    # Room a node keeps under remote_base_dir: below it, node_disk_low, and no case is sent
    # there (one that would not fit waits). 0: never. Read before each upload and every
    # node_disk_check_minutes.
    node_disk_free_gb: Annotated[float, Meta(ge=0, le=1_000_000)] = 20.0
    node_disk_check_minutes: Annotated[float, Meta(gt=0, le=1440)] = 10.0


Seconds = Annotated[float, Meta(gt=0, le=86400)]
# An address as SMTP takes it; the display-name form ("Physics <p@x>") is not needed here.
MAIL_PATTERN = r"^[^@\s<>,;\x00-\x1f]+@[A-Za-z0-9.-]+\Z"
MailAddress = Annotated[str, Meta(pattern=MAIL_PATTERN, max_length=320)]
PATTERN_HELP[MAIL_PATTERN] = "an e-mail address such as physics-oncall@clinic.example"


class WebhookConfig(Section, kw_only=True):
    # http(s) only; the token, if any, is in a file, never here.
    url: Annotated[str, Meta(pattern=r"^https?://[^\s/?#@]+[^\s]*\Z", max_length=2048)]
    token_file: Path | None = None  # Authorization: Bearer <its contents>
    timeout_seconds: Annotated[float, Meta(gt=0, le=300)] = 10.0


class EmailConfig(Section, kw_only=True):
    smtp_host: HostWord
    smtp_port: Annotated[int, Meta(ge=1, le=65535)] = 587
    starttls: bool = True
    username: Annotated[str, Meta(min_length=1, max_length=256)] | None = None
    password_file: Path | None = None  # never a password in the configuration
    sender: MailAddress = msgspec.field(name="from")
    to: Annotated[tuple[MailAddress, ...], Meta(min_length=1, max_length=100)]
    timeout_seconds: Annotated[float, Meta(gt=0, le=300)] = 30.0


class NotificationsConfig(Section, kw_only=True):
    """Who is told of what: each fact named in ``on`` is delivered at least once through
    every channel configured (none: nothing is sent)."""

    on: tuple[Literal["completed", "failed", "alarm"], ...] = ("failed", "alarm")
    webhook: WebhookConfig | None = None
    email: EmailConfig | None = None
    # A receiver that is down or answers 5xx is tried again, waiting longer each time.
    retry_backoff_seconds: Seconds = 10.0
    retry_backoff_cap_seconds: Seconds = 600.0


class HousekeepingConfig(Section, kw_only=True):
    """What the daemon removes on the nodes once nothing needs it (only its own)."""

    remove_finished_tasks: bool = True  # our ended tasks, once their outcome is recorded
    # A case's folder on the node, this long after the case ended (0: at once)...
    remote_retention_hours: Annotated[float, Meta(ge=0, le=87600)] = 72.0
    # ... and after it failed: kept longer, for inspection.
    keep_failed_remote_hours: Annotated[float, Meta(ge=0, le=87600)] = 336.0


class WebConfig(Section, kw_only=True):
    """`mqi web`, and the daemon's own dashboard when this section is given."""

    # An address to listen on; anything but loopback needs a token_file (rules.py).
    host: Annotated[str, Meta(pattern=r"^[A-Za-z0-9.:-]{1,255}\Z")] = "127.0.0.1"
    port: Annotated[int, Meta(ge=1, le=65535)] = 8080
    # The token every page and API call needs (Authorization: Bearer, or the login form);
    # without one, a random token is made in the data folder (web.token, owner-only).
    token_file: Path | None = None


class Sections(Section, kw_only=True):
    """The sections common to the file and the normalised configuration."""

    scanner: ScannerConfig = ScannerConfig()
    main_loop: MainLoopConfig = MainLoopConfig()
    results: ResultsConfig = ResultsConfig()
    database: DatabaseConfig = SqliteDatabase()
    ha: HaConfig = HaConfig()
    logging: LoggingConfig = LoggingConfig()
    alarms: AlarmsConfig = AlarmsConfig()
    notifications: NotificationsConfig = NotificationsConfig()
    housekeeping: HousekeepingConfig = HousekeepingConfig()
    web: WebConfig | None = None


class LegacyHpc(HostSettings, kw_only=True):
    """The original tool's single host; its groups come from ``pueue.groups``."""

    scp_command: str | UnsetType = UNSET
    ssh_command: str | UnsetType = UNSET
    pueue_command: str | UnsetType = UNSET


class LegacyPueue(Section, kw_only=True):
    groups: Annotated[tuple[GroupName, ...], Meta(min_length=1, max_length=256)]


class ConfigFile(Sections, kw_only=True):
    """What a configuration file may contain."""

    base_dir: Path | None = None
    hosts: tuple[HostConfig, ...] | UnsetType = UNSET
    hpc: LegacyHpc | UnsetType = UNSET
    pueue: LegacyPueue | UnsetType = UNSET
    dashboard: Any | UnsetType = UNSET


class Config(Sections, kw_only=True):
    """The effective configuration: every local path absolute, hosts in one list."""

    base_dir: Path
    hosts: tuple[HostConfig, ...] = ()

    def to_builtins(self) -> dict[str, Any]:
        """The effective configuration as plain data (paths as text), e.g. to print as YAML.

        Loading that YAML again gives an equal ``Config``.
        """
        data: dict[str, Any] = msgspec.to_builtins(self, enc_hook=_encode_path)
        return {"base_dir": data.pop("base_dir"), "hosts": data.pop("hosts"), **data}


def _encode_path(value: object) -> str:
    if isinstance(value, Path):
        return str(value)
    raise NotImplementedError


def decode_path(kind: type, value: object) -> object:
    """msgspec ``dec_hook``: local paths are given as non-empty text."""
    if kind is Path:
        if isinstance(value, str) and value and "\x00" not in value:
            return Path(value)
        if isinstance(value, str):
            raise ValueError("expected a path, got empty text" if not value else "NUL in path")
        raise TypeError(f"Expected `path`, got `{_builtin_name(value)}`")
    raise NotImplementedError(kind)


def _builtin_name(value: object) -> str:
    names = {bool: "bool", int: "int", float: "float", list: "array", dict: "object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
