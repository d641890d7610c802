"""Strict configuration: every error names the key and the line; legacy files still load."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from mqi_es.config import (
    Config,
    LoadedConfig,
    check_config_environment,
    load_config,
    resolve_config_path,
)
from mqi_es.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
LEGACY = REPO / "tests" / "data" / "legacy_config.yaml"

HOST = """\
hosts:
  - name: node-a
    host: gpu-a.example.org
    remote_command: cd {case_dir} && tps_env moqui_tps.in
    groups: [gpu0, gpu1]
"""


CLUSTER = """\
hosts:
  - name: cluster
    host: login1.example
    backend: slurm
    remote_command: cd {case_dir} && tps_env moqui_tps.in
    slurm:
      partition: gpu
"""


def load_text(folder: Path, text: str, name: str = "config.yaml") -> LoadedConfig:
    (folder / name).write_text(text)
    return load_config(Path(name), cwd=folder)


def error_of(folder: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_text(folder, text)
    return str(caught.value)


class TestEachErrorNamesKeyPathAndLine:
    @pytest.mark.parametrize(
        ("text", "where", "says"),
        [
            pytest.param(
                "scanner:\n  force_polling: true\n  force_poling: true\n",
                "config.yaml:3:3: scanner.force_poling: ",
                "unknown key 'force_poling' (did you mean 'force_polling'?)",
                id="unknown-nested-key",
            ),
            pytest.param(
                "scanner: {}\nscaner:\n  watch_path: x\n",
                "config.yaml:2:1: scaner: ",
                "unknown key 'scaner' (did you mean 'scanner'?)",
                id="unknown-top-level-key",
            ),
            pytest.param(
                HOST + "    sport: 22\n",
                "config.yaml:6:5: hosts[0].sport: ",
                "did you mean 'port'?",
                id="unknown-key-in-host",
            ),
            pytest.param(
                "main_loop:\n  max_attempts: three\n",
                "config.yaml:2:17: main_loop.max_attempts: ",
                "expected a whole number, got text",
                id="wrong-type",
            ),
            pytest.param(
                HOST + "    port: 70000\n",
                "config.yaml:6:11: hosts[0].port: ",
                "expected a whole number <= 65535",
                id="out-of-range",
            ),
            pytest.param(
                "scanner:\n  quiescence_period_seconds: 0\n",
                "config.yaml:2:30: scanner.quiescence_period_seconds: ",
                "expected a number > 0",
                id="zero-where-positive-needed",
            ),
            pytest.param(
                HOST + "    port: 022\n",
                "config.yaml:6:11: hosts[0].port: ",
                "'022' is not a plain decimal number (YAML 1.1 reads it in base 8, 16, 2 or 60)",
                id="yaml-octal-number",
            ),
            pytest.param(
                "main_loop:\n  sleep_interval_seconds: 1:30\n",
                "config.yaml:2:27: main_loop.sleep_interval_seconds: ",
                "'1:30' is not a plain decimal number",
                id="yaml-base-60-number",
            ),
            pytest.param(
                "logging:\n  level: VERBOSE\n",
                "config.yaml:2:10: logging.level: ",
                "'VERBOSE' is not one of: DEBUG, ERROR, INFO, WARNING",
                id="not-one-of-the-choices",
            ),
            pytest.param(
                "hosts:\n  - remote_command: run\n    groups: [gpu0]\n",
                "config.yaml:2:5: hosts[0]: ",
                "missing required key 'host'",
                id="missing-required-key",
            ),
            pytest.param(
                HOST.replace("[gpu0, gpu1]", "[gpu0, no]"),
                "config.yaml:5:20: hosts[0].groups[1]: ",
                "YAML reads the unquoted 'no' as a boolean",
                id="yaml-no-as-group-name",
            ),
            pytest.param(
                HOST + "    user: yes\n",
                "config.yaml:6:11: hosts[0].user: ",
                "got true or false: YAML reads the unquoted 'yes' as a boolean",
                id="yaml-yes-for-a-text-key",
            ),
            pytest.param(
                HOST + "    remote_base_dir: ~\n",
                "config.yaml:6:22: hosts[0].remote_base_dir: ",
                "YAML reads the unquoted '~' as an empty value (null)",
                id="lone-tilde-is-null",
            ),
            pytest.param(
                "scanner:\n  on: true\n",  # a key is a name: `on` is "on", never true
                "config.yaml:2:3: scanner.on: ",
                "unknown key 'on'",
                id="yaml-on-as-a-key",
            ),
            pytest.param(
                HOST.replace("[gpu0, gpu1]", "['gpu 0']"),
                "config.yaml:5:14: hosts[0].groups[0]: ",
                "expected letters, digits and _ . -",
                id="group-name-pattern",
            ),
            pytest.param(
                HOST.replace("[gpu0, gpu1]", '["gpu0\\n"]'),
                "config.yaml:5:14: hosts[0].groups[0]: ",
                "expected letters, digits and _ . -",
                id="group-name-with-trailing-newline",
            ),
            pytest.param(
                HOST.replace("host: gpu-a.example.org", "host: -oProxyCommand=x"),
                "config.yaml:3:11: hosts[0].host: ",
                "not starting with -",
                id="host-that-ssh-would-read-as-an-option",
            ),
            pytest.param(
                "scanner:\n  watch_path: 'incoming\n",
                "config.yaml:3:1: scanner.watch_path: ",
                "YAML syntax error: found unexpected end of stream",
                id="yaml-syntax-error-unclosed-quote",
            ),
            pytest.param(
                "scanner:\n\twatch_path: incoming\n",
                "config.yaml:2:1: scanner: ",
                "YAML syntax error: found character '\\t' that cannot start any token",
                id="yaml-syntax-error-tab",
            ),
            pytest.param(
                "scanner:\n  watch_path: a\n  force_polling: true\n  watch_path: b\n",
                "config.yaml:4:3: scanner.watch_path: ",
                "key given twice (first at line 2)",
                id="yaml-key-given-twice",
            ),
            pytest.param(
                HOST + HOST.replace("hosts:\n", "").replace("gpu-a", "gpu-b"),
                "config.yaml:6:11: hosts[1].name: ",
                "host name 'node-a' given twice (also at hosts[0].name)",
                id="duplicate-host-name",
            ),
            pytest.param(
                "hosts:\n  - host: a\n    remote_command: run\n    groups: [g]\n"
                "  - host: a\n    remote_command: run\n    groups: [g]\n",
                "config.yaml:5:11: hosts[1].host: ",
                "host name 'a' given twice (also at hosts[0].host)",
                id="duplicate-host-by-defaulted-name",
            ),
            pytest.param(
                HOST.replace("[gpu0, gpu1]", "[gpu0, gpu1, gpu0]"),
                "config.yaml:5:26: hosts[0].groups[2]: ",
                "group 'gpu0' given twice",
                id="duplicate-group",
            ),
            pytest.param(
                HOST + "hpc:\n  host: b\n  remote_command: run\npueue:\n  groups: [g]\n",
                "config.yaml:6:1: hpc: ",
                "give either hosts (a list) or the single-host hpc with pueue.groups, not both",
                id="both-hpc-and-hosts",
            ),
            pytest.param(
                HOST.replace("{case_dir}", "{case_folder}"),
                "config.yaml:4:21: hosts[0].remote_command: ",
                "unknown placeholder {case_folder}; known: {case_dir}",
                id="bad-placeholder",
            ),
            pytest.param(
                HOST.replace("cd {case_dir}", "cd '{case_dir}'"),
                "config.yaml:4:21: hosts[0].remote_command: ",
                "placeholder {case_dir} is inside single quotes; values are quoted for you",
                id="quoted-placeholder",
            ),
            pytest.param(
                HOST + "    password: hunter2\n",
                "config.yaml:6:5: hosts[0].password: ",
                "passwords are not accepted in the configuration: use a key file (key_file) "
                "or the SSH agent",
                id="password-key",
            ),
            pytest.param(
                "hpc:\n  host: b\n  key_passphrase: x\n  remote_command: run\n",
                "config.yaml:3:3: hpc.key_passphrase: ",
                "passwords are not accepted",
                id="passphrase-key-in-legacy-host",
            ),
            pytest.param(
                "hpc:\n  host: b\n  remote_command: run\n  groups: [g]\n",
                "config.yaml:4:3: hpc.groups: ",
                "takes its groups from pueue.groups",
                id="groups-under-legacy-hpc",
            ),
            pytest.param(
                "hpc:\n  host: b\n  remote_command: run\n",
                "config.yaml:1:1: hpc: ",
                "needs its groups in pueue.groups",
                id="legacy-hpc-without-groups",
            ),
            pytest.param(
                HOST + "pueue:\n  groups: [gpu0]\n",
                "config.yaml:6:1: pueue: ",
                "each host lists its own groups",
                id="legacy-pueue-groups-with-hosts",
            ),
            pytest.param(
                HOST + "    remote_base_dir: mqi_cases\n",
                "config.yaml:6:22: hosts[0].remote_base_dir: ",
                "must be an absolute path on the node or start with ~/",
                id="relative-remote-base-dir",
            ),
            pytest.param(
                HOST + "    task_env: {HOME: /srv}\n",
                "config.yaml:6:15: hosts[0].task_env: ",
                "HOME is set for every task already (by the node or by the queue)",
                id="task-env-reserved-name",
            ),
            pytest.param(
                HOST + "    task_env: {CUDA_VISIBLE_DEVICES: '{gpu}'}\n",
                "config.yaml:6:15: hosts[0].task_env: ",
                "unknown placeholder {gpu}; known: {case_id}",
                id="task-env-unknown-placeholder",
            ),
            pytest.param(
                HOST + "    task_env: {A: x}\n    task_env_from_node: [A]\n",
                "config.yaml:6:15: hosts[0].task_env: ",
                "A given in both task_env and task_env_from_node",
                id="task-env-given-twice",
            ),
            pytest.param(
                HOST + "    remote_base_dir: /\n",
                "config.yaml:6:22: hosts[0].remote_base_dir: ",
                "must be a folder of its own (e.g. ~/mqi_cases), not / or the home itself",
                id="remote-base-dir-is-the-root",
            ),
            pytest.param(
                HOST + "    remote_base_dir: ~/\n",
                "config.yaml:6:22: hosts[0].remote_base_dir: ",
                "not / or the home itself",
                id="remote-base-dir-is-the-home",
            ),
            pytest.param(
                HOST + "    remote_base_dir: ~//mqi_cases\n",
                "config.yaml:6:22: hosts[0].remote_base_dir: ",
                "must not contain '//'",
                id="remote-base-dir-double-slash",
            ),
            pytest.param(
                HOST + "    remote_base_dir: ~/cases/../../etc\n",
                "config.yaml:6:22: hosts[0].remote_base_dir: ",
                "must not climb out of a folder with '..'",
                id="remote-base-dir-climbs-out",
            ),
            pytest.param(
                HOST + "    remote_base_dir: /srv/mqi/..\n",
                "config.yaml:6:22: hosts[0].remote_base_dir: ",
                "must not climb out of a folder with '..'",
                id="remote-base-dir-ends-climbing",
            ),
            pytest.param(
                "main_loop:\n  retry_backoff_seconds: 60\n  retry_backoff_cap_seconds: 30\n",
                "config.yaml:3:30: main_loop.retry_backoff_cap_seconds: ",
                "must be at least retry_backoff_seconds (60)",
                id="backoff-cap-below-backoff",
            ),
            pytest.param(
                "main_loop:\n  sleep_interval_seconds: 60\nalarms:\n  cycle_overdue_minutes: 2\n",
                "config.yaml:4:26: alarms.cycle_overdue_minutes: ",
                "must be at least three cycles (3 min with main_loop.sleep_interval_seconds 60)",
                id="overdue-within-three-cycles",
            ),
            pytest.param(
                CLUSTER + "    groups: [gpu0]\n",
                "config.yaml:8:5: hosts[0].groups: ",
                "a Slurm cluster has no groups: set slurm.slots",
                id="slurm-cluster-with-groups",
            ),
            pytest.param(
                CLUSTER.replace(
                    "      partition: gpu\n",
                    "      partition: gpu\n"
                    "      sbatch_options: [--account=physics, --chdir=/tmp]\n",
                ),
                "config.yaml:8:43: hosts[0].slurm.sbatch_options[1]: ",
                "--chdir would set --chdir, which the daemon sets or needs as it is",
                id="sbatch-option-we-set",
            ),
            pytest.param(
                CLUSTER.replace(
                    "      partition: gpu\n",
                    "      partition: gpu\n      sbatch_options: ['--qos=x; rm -rf ~']\n",
                ),
                "config.yaml:8:24: hosts[0].slurm.sbatch_options[0]: ",
                "one option such as --account=physics",
                id="sbatch-option-not-one-word",
            ),
            pytest.param(
                CLUSTER.replace(
                    "      partition: gpu\n",
                    "      partition: gpu\n      sbatch_options: [--out=/elsewhere/%j]\n",
                ),
                "config.yaml:8:24: hosts[0].slurm.sbatch_options[0]: ",
                "--out would set --output",
                id="sbatch-option-abbreviating-ours",
            ),
            pytest.param(
                CLUSTER.replace("    slurm:\n      partition: gpu\n", ""),
                "config.yaml:4:14: hosts[0].backend: ",
                "backend: slurm needs a slurm: section",
                id="slurm-without-its-section",
            ),
            pytest.param(
                "main_loop:\n  progress_pattern: 'batch (\\d+) of (\\d+)'\n",
                "config.yaml:2:21: main_loop.progress_pattern: ",
                "it needs the named groups (?P<done>...) and (?P<total>...)",
                id="progress-pattern-without-named-groups",
            ),
            pytest.param(
                "main_loop:\n  progress_pattern: 'batch (?P<done>'\n",
                "config.yaml:2:21: main_loop.progress_pattern: ",
                "not a regular expression: missing ), unterminated subpattern",
                id="progress-pattern-not-a-regex",
            ),
            pytest.param(
                "results:\n  globs: ['**/*.dcm', '../*.dcm']\n",
                "config.yaml:2:23: results.globs[1]: ",
                "must be relative to the case folder on the node",
                id="glob-leaving-the-case-folder",
            ),
            pytest.param(
                "scanner:\n  watch_path: var\n",
                "config.yaml:2:15: scanner.watch_path: ",
                "the watch folder holds database.path",
                id="watch-folder-holding-the-database",
            ),
            pytest.param(
                "database:\n  path: var/a.sqlite\n  views_path: ./var/a.sqlite\n",
                "config.yaml:3:15: database.views_path: ",
                "must differ from database.path",
                id="views-in-the-event-store-file",
            ),
            pytest.param(
                "database:\n  store: mysql\n",
                "config.yaml:2:10: database.store: ",
                "'mysql' is not one of",
                id="store-unknown",
            ),
            pytest.param(
                "database:\n  store: postgres\n",
                "config.yaml:1:1: database: ",
                "missing required key 'dsn'",
                id="postgres-without-dsn",
            ),
            pytest.param(
                "database:\n  store: postgres\n  dsn: {host: db, dbname: mqi, user: mqi}\n"
                "  password: secret\n",
                "config.yaml:4:3: database.password: ",
                "passwords are not accepted",
                id="postgres-password-in-config",
            ),
            pytest.param(
                "scanner:\n  watch_path: ''\n",
                "config.yaml:2:15: scanner.watch_path: ",
                "expected a path, got empty text",
                id="empty-path",
            ),
            pytest.param(
                "scanner:\n",
                "config.yaml:1:9: scanner: ",
                "expected a mapping (key: value), got nothing (null)",
                id="section-left-empty",
            ),
        ],
    )
    def test_error_message_starts_with_file_line_column_and_key_path(
        self, tmp_path: Path, text: str, where: str, says: str
    ) -> None:
        message = error_of(tmp_path, text)
        assert message.startswith(where), message
        assert says in message[len(where) :], message

    def test_whole_file_that_is_not_a_mapping_is_refused(self, tmp_path: Path) -> None:
        assert error_of(tmp_path, "- a\n- b\n") == (
            "config.yaml:1:1: the file must be a mapping of sections (hosts:, scanner:, ...)"
        )

    def test_several_yaml_documents_are_refused(self, tmp_path: Path) -> None:
        message = error_of(tmp_path, "scanner: {}\n---\nlogging: {}\n")
        assert message.startswith("config.yaml:2:1: YAML syntax error: but found another document")

    def test_password_value_never_appears_in_the_message(self, tmp_path: Path) -> None:
        message = error_of(tmp_path, HOST + "    password: 'hunter2-secret'\n")
        assert "hunter2" not in message

    def test_syntax_error_message_does_not_quote_the_source_line(self, tmp_path: Path) -> None:
        message = error_of(tmp_path, "hosts:\n  - host: a\n    note: 'hunter2-secret\n")
        assert message.startswith("config.yaml:4:1: hosts[0].note: YAML syntax error")
        assert "hunter2" not in message

    def test_control_character_is_refused_at_its_position(self, tmp_path: Path) -> None:
        message = error_of(tmp_path, "scanner:\n  watch_path: in\x07coming\n")
        assert message.startswith("config.yaml:2:17: YAML syntax error: a control character")

    def test_a_file_over_a_mebibyte_is_refused_at_once_without_parsing_it(
        self, tmp_path: Path
    ) -> None:
        # 20 MB of comments: parsing them took minutes; the size alone refuses them.
        (tmp_path / "config.yaml").write_text("# padding\n" * 2_000_000)
        with pytest.raises(ConfigError, match="larger than 1,048,576 bytes"):
            load_config(Path("config.yaml"), cwd=tmp_path)

    def test_file_that_is_not_utf8_is_refused_with_its_line(self, tmp_path: Path) -> None:
        (tmp_path / "config.yaml").write_bytes(b"scanner:\n  watch_path: caf\xe9\n")
        with pytest.raises(ConfigError, match=r"^config\.yaml:2: the file is not UTF-8 text$"):
            load_config(Path("config.yaml"), cwd=tmp_path)

    @given(
        section=st.sampled_from(["scanner", "main_loop", "logging"]),
        position=st.integers(min_value=0, max_value=3),
        key=st.from_regex(r"\Azz_[a-z_]{1,12}\Z"),
    )
    def test_unknown_key_is_reported_at_the_line_it_was_written(
        self, tmp_path_factory: pytest.TempPathFactory, section: str, position: int, key: str
    ) -> None:
        valid = {
            "scanner": ["force_polling: false", "poll_delay_ms: 500", "rescan_interval_seconds: 5"],
            "main_loop": [
                "max_attempts: 2",
                "sleep_interval_seconds: 3",
                "retry_backoff_seconds: 1",
            ],
            "logging": ["level: DEBUG", "backups: 2", "max_bytes: 100000"],
        }[section]
        lines = [f"  {entry}" for entry in valid]
        lines.insert(position, f"  {key}: 1")
        text = f"# a comment\n{section}:\n" + "\n".join(lines) + "\n"
        message = error_of(tmp_path_factory.mktemp("cfg"), text)
        assert message.startswith(f"config.yaml:{position + 3}:3: {section}.{key}: unknown key")


class TestLegacyConfiguration:
    def test_original_tool_file_loads_with_a_warning_per_obsolete_key(self) -> None:
        loaded = load_config(LEGACY)
        obsolete = [w.split(": ")[1] for w in loaded.warnings if "obsolete" in w]
        assert obsolete == ["dashboard", "hpc.scp_command", "hpc.ssh_command", "hpc.pueue_command"]
        assert any(w.startswith(f"{LEGACY}:9:1: dashboard: ") for w in loaded.warnings)
        assert any(w.startswith(f"{LEGACY}:17:3: hpc.scp_command: ") for w in loaded.warnings)

    def test_legacy_single_host_becomes_one_host_with_pueue_groups(self) -> None:
        (host,) = load_config(LEGACY).config.hosts
        assert (host.name, host.host, host.user) == ("192.0.2.10", "192.0.2.10", "mqi")
        assert host.groups == ("default", "gpu_a", "gpu_b")
        assert host.remote_base_dir == "~/MOQUI_SMC"
        assert host.remote_command == "python interpreter.py && python moquisim.py"

    def test_legacy_pueue_command_naming_a_binary_is_used_as_the_pueue_executable(self) -> None:
        (host,) = load_config(LEGACY).config.hosts
        assert host.pueue == "/usr/local/bin/pueue"

    def test_legacy_pueue_command_with_arguments_is_refused(self, tmp_path: Path) -> None:
        text = LEGACY.read_text().replace("/usr/local/bin/pueue", "pueue --config /etc/p.yml")
        message = error_of(tmp_path, text)
        assert message.startswith("config.yaml:19:18: hpc.pueue_command: cannot be honoured")

    def test_legacy_pueue_command_together_with_pueue_is_refused(self, tmp_path: Path) -> None:
        text = LEGACY.read_text().replace('  user: "mqi"\n', '  user: "mqi"\n  pueue: pueue\n')
        message = error_of(tmp_path, text)
        assert message.startswith("config.yaml:20:18: hpc.pueue_command: give the pueue")

    def test_legacy_relative_paths_get_a_warning_about_their_new_base(self) -> None:
        warnings = load_config(LEGACY).warnings
        (moved,) = [w for w in warnings if "relative paths" in w]
        assert "scanner.watch_path, database.path, logging.path" in moved
        assert str(LEGACY.parent) in moved

    def test_legacy_file_with_base_dir_has_no_relative_path_warning(self, tmp_path: Path) -> None:
        loaded = load_text(tmp_path, LEGACY.read_text() + "base_dir: /srv/mqi\n")
        assert not [w for w in loaded.warnings if "relative paths" in w]
        assert loaded.config.scanner.watch_path == Path("/srv/mqi/new_cases")


class TestLocalPaths:
    def test_relative_paths_resolve_against_the_config_folder_by_default(
        self, tmp_path: Path
    ) -> None:
        (tmp_path / "etc").mkdir()
        config = load_text(tmp_path, "scanner:\n  watch_path: in\n", "etc/mqi.yaml").config
        assert config.base_dir == tmp_path / "etc"
        assert config.scanner.watch_path == tmp_path / "etc" / "in"
        assert config.database.path == tmp_path / "etc" / "var" / "events.sqlite"

    def test_relative_base_dir_is_relative_to_the_config_folder(self, tmp_path: Path) -> None:
        (tmp_path / "etc").mkdir()
        text = "base_dir: ../data\nlogging:\n  path: logs/mqi.log\n"
        config = load_text(tmp_path, text, "etc/mqi.yaml").config
        assert config.base_dir == tmp_path / "data"
        assert config.logging.path == tmp_path / "data" / "logs" / "mqi.log"

    def test_absolute_base_dir_is_used_as_given(self, tmp_path: Path) -> None:
        config = load_text(tmp_path, "base_dir: /srv/mqi\n").config
        assert config.results.local_path == Path("/srv/mqi/var/results")

    def test_absolute_paths_ignore_base_dir(self, tmp_path: Path) -> None:
        config = load_text(tmp_path, "base_dir: /srv/mqi\nscanner:\n  watch_path: /mnt/in\n").config
        assert config.scanner.watch_path == Path("/mnt/in")

    def test_without_a_file_paths_resolve_against_the_working_directory(
        self, tmp_path: Path
    ) -> None:
        loaded = load_config(None, cwd=tmp_path)
        assert loaded.source is None and loaded.warnings == []
        assert loaded.config.base_dir == tmp_path
        assert loaded.config.scanner.watch_path == tmp_path / "var" / "incoming"

    def test_tilde_in_local_paths_is_the_local_home(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        config = load_text(tmp_path, HOST + "    key_file: ~/.ssh/id_mqi\n").config
        (host,) = config.hosts
        assert host.key_file == tmp_path / "home" / ".ssh" / "id_mqi"
        assert host.known_hosts == tmp_path / "home" / ".ssh" / "known_hosts"

    def test_tilde_in_remote_base_dir_is_kept_for_the_remote_home(self, tmp_path: Path) -> None:
        (host,) = load_text(tmp_path, HOST + "    remote_base_dir: ~/cases\n").config.hosts
        assert host.remote_base_dir == "~/cases"


class TestChoosingTheFile:
    def test_command_line_wins_over_environment(self, tmp_path: Path) -> None:
        cli, env = tmp_path / "cli.yaml", tmp_path / "env.yaml"
        cli.touch()
        env.touch()
        assert resolve_config_path(str(cli), {"MQI_CONFIG": str(env)}) == cli

    def test_environment_is_used_without_command_line(self, tmp_path: Path) -> None:
        env = tmp_path / "env.yaml"
        env.touch()
        assert resolve_config_path(None, {"MQI_CONFIG": str(env)}) == env

    def test_neither_means_built_in_defaults(self) -> None:
        assert resolve_config_path(None, {}) is None
        assert resolve_config_path(None, {"MQI_CONFIG": ""}) is None

    def test_missing_file_from_command_line_is_named(self, tmp_path: Path) -> None:
        missing = tmp_path / "nope.yaml"
        with pytest.raises(ConfigError, match=f"^--config: configuration file {missing} does"):
            resolve_config_path(str(missing), {})

    def test_missing_file_from_environment_is_named(self, tmp_path: Path) -> None:
        missing = tmp_path / "nope.yaml"
        with pytest.raises(ConfigError, match=f"^MQI_CONFIG: configuration file {missing} does"):
            resolve_config_path(None, {"MQI_CONFIG": str(missing)})

    def test_folder_given_as_file_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="is not a file"):
            resolve_config_path(str(tmp_path), {})


class TestExampleAndEffectiveConfiguration:
    def test_example_config_loads_without_warnings(self) -> None:
        loaded = load_config(REPO / "config" / "config.yaml")
        assert loaded.warnings == []
        (host,) = loaded.config.hosts
        assert host.groups == ("gpu0", "gpu1", "gpu2", "gpu3")
        assert host.remote_command == "cd {case_dir} && tps_env moqui_tps.in"
        assert loaded.config.base_dir == REPO
        assert loaded.config.scanner.watch_path == REPO / "var" / "incoming"

    def test_built_in_defaults_are_a_valid_configuration(self, tmp_path: Path) -> None:
        defaults = load_config(None, cwd=tmp_path).config
        (tmp_path / "c.yaml").write_text("{}\n")
        from_file = load_config(tmp_path / "c.yaml").config
        assert from_file == defaults

    @pytest.mark.parametrize("source", [LEGACY, REPO / "config" / "config.yaml", None])
    def test_effective_configuration_loads_back_unchanged(
        self, tmp_path: Path, source: Path | None
    ) -> None:
        config = load_config(source, cwd=tmp_path).config
        text = yaml.safe_dump(config.to_builtins(), sort_keys=False)
        assert load_text(tmp_path, text).config == config

    def test_effective_configuration_shows_resolved_paths_as_text(self, tmp_path: Path) -> None:
        data = load_text(tmp_path, HOST).config.to_builtins()
        assert list(data)[:2] == ["base_dir", "hosts"]
        assert data["scanner"]["watch_path"] == str(tmp_path / "var" / "incoming")
        assert data["hosts"][0]["name"] == "node-a"

    def test_file_without_hosts_warns_that_cases_will_not_run(self, tmp_path: Path) -> None:
        assert load_text(tmp_path, "scanner: {}\n").warnings == [
            "config.yaml: no hosts configured: cases are registered but never run"
        ]

    def test_config_is_frozen(self) -> None:
        config = load_config(None).config
        with pytest.raises(AttributeError):
            config.base_dir = Path("/")  # type: ignore[misc]


class TestEnvironmentChecks:
    def ready(self, tmp_path: Path, extra: str = "") -> Config:
        """A configuration whose every local file and folder is in order."""
        (tmp_path / "var" / "incoming").mkdir(parents=True)
        key = tmp_path / "id_mqi"
        key.write_text("not a real key\n")
        key.chmod(0o600)
        (tmp_path / "known_hosts").write_text("")
        text = HOST + f"    key_file: {key}\n    known_hosts: {tmp_path / 'known_hosts'}\n"
        return load_text(tmp_path, text + extra).config

    def test_configuration_in_order_has_no_problems(self, tmp_path: Path) -> None:
        assert check_config_environment(self.ready(tmp_path)) == []

    def test_missing_watch_folder_is_reported(self, tmp_path: Path) -> None:
        config = self.ready(tmp_path)
        (tmp_path / "var" / "incoming").rmdir()
        incoming = tmp_path / "var" / "incoming"
        assert check_config_environment(config) == [
            f"scanner.watch_path: folder {incoming} does not exist"
        ]

    def test_watch_path_that_is_a_file_is_reported(self, tmp_path: Path) -> None:
        config = self.ready(tmp_path)
        incoming = tmp_path / "var" / "incoming"
        incoming.rmdir()
        incoming.write_text("")
        assert check_config_environment(config) == [
            f"scanner.watch_path: {incoming} is not a folder"
        ]

    def test_output_folder_that_cannot_be_created_is_reported(self, tmp_path: Path) -> None:
        (tmp_path / "blocker").write_text("")
        config = self.ready(tmp_path, "logging:\n  path: blocker/logs/mqi.log\n")
        assert check_config_environment(config) == [
            f"logging.path: cannot create folder {tmp_path / 'blocker' / 'logs'}: "
            f"{tmp_path / 'blocker'} is not a folder"
        ]

    def test_database_path_that_is_a_folder_is_reported(self, tmp_path: Path) -> None:
        config = self.ready(tmp_path)
        (tmp_path / "var" / "events.sqlite").mkdir()
        assert check_config_environment(config) == [
            f"database.path: {tmp_path / 'var' / 'events.sqlite'} exists and is not a file"
        ]

    def test_missing_key_file_is_reported(self, tmp_path: Path) -> None:
        config = self.ready(tmp_path)
        (tmp_path / "id_mqi").unlink()
        assert check_config_environment(config) == [
            f"host 'node-a': key_file {tmp_path / 'id_mqi'} does not exist"
        ]

    def test_key_file_readable_by_others_is_reported(self, tmp_path: Path) -> None:
        config = self.ready(tmp_path)
        (tmp_path / "id_mqi").chmod(0o644)
        (problem,) = check_config_environment(config)
        assert problem.startswith(f"host 'node-a': key_file {tmp_path / 'id_mqi'} can be accessed")
        assert "(mode 0644)" in problem and "chmod 600" in problem

    def test_missing_known_hosts_without_trust_on_first_use_is_reported(
        self, tmp_path: Path
    ) -> None:
        config = self.ready(tmp_path)
        (tmp_path / "known_hosts").unlink()
        (problem,) = check_config_environment(config)
        assert problem.startswith(f"host 'node-a': known_hosts {tmp_path / 'known_hosts'} does")
        assert "trust_on_first_use is false" in problem

    def test_missing_known_hosts_with_trust_on_first_use_is_fine(self, tmp_path: Path) -> None:
        self.ready(tmp_path)
        (tmp_path / "known_hosts").unlink()
        text = (tmp_path / "config.yaml").read_text() + "    trust_on_first_use: true\n"
        config = load_text(tmp_path, text).config
        assert check_config_environment(config) == []

    @pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes any folder")
    def test_unreadable_watch_folder_and_unwritable_var_are_reported(self, tmp_path: Path) -> None:
        config = self.ready(tmp_path)
        incoming, var = tmp_path / "var" / "incoming", tmp_path / "var"
        incoming.chmod(0o000)
        var.chmod(0o500)
        try:
            problems = check_config_environment(config)
        finally:
            incoming.chmod(0o700)
            var.chmod(0o700)
        assert problems[0].startswith(f"scanner.watch_path: cannot list folder {incoming}")
        assert f"folder {var} is not writable by this user" in problems[1]


def test_a_postgres_store_loads_with_its_password_in_a_file(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        "database:\n  store: postgres\n  dsn: {host: db.clinic, dbname: mqi, user: mqi}\n"
        "  password_file: secrets/pg\nha: {takeover_seconds: 20, name: node-b}\n",
    ).config
    database = config.database
    assert database.dsn.port == 5432
    assert database.password_file == tmp_path / "secrets/pg"
    assert database.views_path == tmp_path / "var/views.sqlite"
    assert database.data_dir == tmp_path / "var"
    assert database.where == "postgresql://mqi@db.clinic:5432/mqi"
    assert (config.ha.takeover_seconds, config.ha.name) == (20, "node-b")


def test_a_database_section_without_store_is_sqlite_as_before(tmp_path: Path) -> None:
    config = load_text(tmp_path, "database:\n  path: var/log.sqlite\n").config
    assert config.database.path == tmp_path / "var/log.sqlite"
    assert config.database.data_dir == tmp_path / "var"


def test_a_file_holding_a_password_may_be_named(tmp_path: Path) -> None:
    text = (
        "notifications:\n  email: {smtp_host: mail, from: a@b.c, to: [d@e.f], "
        "username: mqi, password_file: secrets/smtp}\n"
    )
    assert load_text(tmp_path, text).config.notifications.email.password_file == (
        tmp_path / "secrets/smtp"
    )
