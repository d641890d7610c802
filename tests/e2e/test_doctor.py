"""`mqi doctor` against the sandbox GPU node: all well, then one fault at a time."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from mqi_es.sandbox.site import write_config

runner = CliRunner()
NODE_CHECKS = ("ssh", "pueue version", "pueue status", "groups", "remote folder", "clock")


def doctor(config: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["--config", str(config), "doctor"])
    return result.exit_code, result.output


def line(output: str, check: str) -> str:
    """The output line of one check: ``<verdict>  <check, in 26 columns> <message>``."""
    (found,) = [text for text in output.splitlines() if text[6:32].rstrip() == check]
    return found


def verdict(output: str, check: str) -> str:
    return line(output, check).split()[0]


def test_a_healthy_sandbox_node_passes_every_check(tmp_path: Path, sandbox_node):
    config = write_config(tmp_path / "site", sandbox_node)
    code, output = doctor(config)
    assert code == 0, output
    assert verdict(output, "config") == "ok"
    assert [verdict(output, f"sandbox: {check}") for check in NODE_CHECKS] == ["ok"] * 6
    assert "pueue 4.0.4" in line(output, "sandbox: pueue version")
    assert "gpu0, gpu1 present, one task at a time" in line(output, "sandbox: groups")
    assert output.count("ok    local folder") == 3
    assert not list((sandbox_node.home / "mqi_cases").iterdir())  # the probe is removed
    assert "PRIVATE KEY" not in output


def test_a_stopped_ssh_server_fails_reachability_with_what_to_try(tmp_path, sandbox_node):
    config = write_config(tmp_path / "site", sandbox_node)
    sandbox_node.stop_ssh()
    code, output = doctor(config)
    assert code == 1
    ssh = line(output, "sandbox: ssh")
    assert ssh.startswith("FAIL") and "connection refused" in ssh
    assert "is sshd running there?" in ssh and f"ssh -p {sandbox_node.port} " in ssh
    assert [verdict(output, f"sandbox: {check}") for check in NODE_CHECKS[1:]] == ["skip"] * 5


def test_an_unknown_host_key_fails_with_the_keyscan_line(tmp_path, sandbox_node):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    known_hosts.chmod(0o600)
    config = write_config(tmp_path / "site", sandbox_node, host={"known_hosts": str(known_hosts)})
    code, output = doctor(config)
    assert code == 1
    ssh = line(output, "sandbox: ssh")
    assert ssh.startswith("FAIL") and "is not in known_hosts" in ssh
    assert f"ssh-keyscan -p {sandbox_node.port} 127.0.0.1 >> {known_hosts}" in ssh
    assert known_hosts.read_text() == ""  # verified, never trusted silently


def test_a_missing_group_fails_naming_it_and_how_to_create_it(tmp_path, sandbox_node):
    config = write_config(
        tmp_path / "site", sandbox_node, host={"groups": ["gpu0", "gpu1", "gpu7"]}
    )
    code, output = doctor(config)
    assert code == 1
    groups = line(output, "sandbox: groups")
    assert groups.startswith("FAIL")
    assert "missing on the node: gpu7" in groups
    assert "pueue group add gpu7" in groups and "pueue parallel 1 -g gpu7" in groups


def test_a_group_running_two_tasks_at_once_fails_with_the_parallel_command(tmp_path, sandbox_node):
    assert sandbox_node.pueue("parallel", "2", "-g", "gpu1").returncode == 0
    code, output = doctor(write_config(tmp_path / "site", sandbox_node))
    assert code == 1
    groups = line(output, "sandbox: groups")
    assert "gpu1 runs 2" in groups and "pueue parallel 1 -g gpu1" in groups


def test_a_stopped_pueue_daemon_fails_with_how_to_start_it(tmp_path, sandbox_node):
    config = write_config(tmp_path / "site", sandbox_node)
    sandbox_node.stop_pueue_daemon()
    code, output = doctor(config)
    assert code == 1
    assert verdict(output, "sandbox: pueue version") == "ok"  # the client answers without it
    status = line(output, "sandbox: pueue status")
    assert status.startswith("FAIL") and "pueue daemon not running on the node" in status
    assert "systemctl --user start pueued" in status
    assert verdict(output, "sandbox: groups") == "skip"


@pytest.mark.parametrize(
    ("version", "expected", "code"), [("2.1.0", "FAIL", 1), ("5.0.0", "warn", 0)]
)
def test_pueue_before_3_fails_and_after_4_warns(tmp_path, sandbox_node, version, expected, code):
    wrapper = sandbox_node.home / "other-pueue"
    wrapper.write_text(
        f'#!/bin/sh\n[ "$1" = --version ] && exec echo "pueue {version}"\nexec pueue "$@"\n'
    )
    wrapper.chmod(0o700)
    config = write_config(tmp_path / "site", sandbox_node, host={"pueue": "~/other-pueue"})
    exit_code, output = doctor(config)
    assert exit_code == code, output
    pueue = line(output, "sandbox: pueue version")
    assert pueue.startswith(expected) and f"pueue {version}" in pueue
    status = line(output, "sandbox: pueue status")
    if version.startswith("2."):  # the daemon would not use it either: nothing is sent to it
        assert status.startswith("FAIL") and "older than 3.0" in status
    else:
        assert status.startswith("ok")


def test_a_node_clock_a_minute_ahead_is_a_warning(tmp_path, sandbox_node):
    fake_date = sandbox_node.bin_dir / "date"  # first on the node's PATH
    fake_date.write_text('#!/bin/sh\nexec /bin/date -d "@$(( $(/bin/date +%s) + 60 ))" "$@"\n')
    fake_date.chmod(0o700)
    code, output = doctor(write_config(tmp_path / "site", sandbox_node))
    assert code == 0, output
    clock = line(output, "sandbox: clock")
    assert clock.startswith("warn") and " s ahead of this machine" in clock
    assert "timedatectl set-ntp true" in clock


def test_a_remote_base_folder_that_cannot_be_written_fails(tmp_path, sandbox_node):
    (sandbox_node.home / "mqi_cases").write_text("a file where the case folders belong\n")
    code, output = doctor(write_config(tmp_path / "site", sandbox_node))
    assert code == 1
    remote = line(output, "sandbox: remote folder")
    assert remote.startswith("FAIL") and "cannot write in ~/mqi_cases" in remote


def test_a_configuration_that_does_not_load_is_one_failed_check(tmp_path):
    config = tmp_path / "mqi.yaml"
    config.write_text("scanner:\n  force_poling: true\n")
    code, output = doctor(config)
    assert code == 1
    assert line(output, "config").startswith("FAIL") and "force_poling" in output
    assert "1 checks: 1 failed" in output


def test_a_slurm_cluster_is_checked_as_the_daemon_will_use_it(tmp_path, slurm_cluster,
                                                              sshd_factory):  # fmt: skip
    login = sshd_factory(env=slurm_cluster.env)
    cluster = {"name": "cluster", "backend": "slurm", "groups": [],
               "slurm": {"partition": "gpu", "slots": 2, "gres": "gpu:1"}}  # fmt: skip
    code, output = doctor(write_config(tmp_path / "site", login, host=cluster))
    assert code == 0, output
    for check in ("ssh", "squeue", "partition", "remote folder", "clock", "MinJobAge"):
        assert verdict(output, f"cluster: {check}") == "ok", output
    assert "partition gpu is up and takes gpu:1" in line(output, "cluster: partition")
    assert verdict(output, "cluster: accounting") == "warn"  # jobcomp only: no slurmdbd
    assert "job completion log" in line(output, "cluster: accounting")
    assert "86400 s" in line(output, "cluster: MinJobAge")

    wrong = {**cluster, "slurm": {"partition": "nosuch", "gres": "gpu:1"}}
    code, output = doctor(write_config(tmp_path / "other", login, host=wrong))
    assert code == 1 and verdict(output, "cluster: partition") == "FAIL"
    assert "partition nosuch not found" in line(output, "cluster: partition")
    no_gres = {**cluster, "slurm": {"partition": "gpu", "gres": "fpga:1"}}
    code, output = doctor(write_config(tmp_path / "third", login, host=no_gres))
    assert code == 1 and "offers gres fpga" in line(output, "cluster: partition")


def postgres_site(root: Path, node, database, **dsn) -> Path:
    given = database.dsn
    return write_config(root, node, database={
        "store": "postgres", "password_file": str(database.password_file),
        "dsn": {"host": given.host, "port": given.port, "dbname": given.dbname,
                "user": given.user, **dsn},
        "views_path": "var/views.sqlite", "connect_timeout_seconds": 2,
    })  # fmt: skip


def test_a_postgresql_store_is_checked_connection_schema_lease_and_clock(
    tmp_path, sandbox_node, postgres_server
):
    from mqi_es.adapters.eventstore.lease import PostgresLease

    fresh = postgres_server.create_database("doctor_fresh")  # nothing created in it yet
    code, output = doctor(postgres_site(tmp_path / "fresh", sandbox_node, fresh))
    assert verdict(output, "event store: connection") == "ok", output
    assert "PostgreSQL 1" in line(output, "event store: connection")
    assert verdict(output, "event store: schema") == "warn"
    assert "not created yet: mqi_events" in line(output, "event store: schema")
    assert verdict(output, "event store: clock") == "ok"
    assert "s behind ours" in output or "s ahead of ours" in output

    from mqi_es.adapters.eventstore.postgres import prepare

    prepare(fresh)
    lease = PostgresLease(fresh, member="m1", name="node-a", ttl=30)
    lease.campaign()
    code, output = doctor(postgres_site(tmp_path / "led", sandbox_node, fresh))
    lease.close()
    assert code == 0, output
    assert verdict(output, "event store: schema") == "ok"
    assert "node-a leads (term 1" in line(output, "event store: lease")

    code, output = doctor(postgres_site(tmp_path / "wrong", sandbox_node, fresh, port=1))
    assert code == 1 and verdict(output, "event store: connection") == "FAIL", output
    assert "cannot be reached" in line(output, "event store: connection")
    assert verdict(output, "event store: lease") == "skip"
