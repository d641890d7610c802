"""The node's hashing command, run here with the real openssl and coreutils sha256sum."""

import hashlib
import subprocess
from pathlib import Path

import pytest

from mqi_es.adapters.ssh.transfer.sums import SumsError, hash_command, names_input, read_digests

# Sorted as the transfers list them: names like options come first.
PLAIN = sorted(["plain.dcm", "with space.dcm", "back\\slash.dcm", "é 日本.mhd", "  leading.txt",
                "star*name", "-dash.raw", "-out", "--help"])  # fmt: skip
WITH_CONTROLS = sorted([*PLAIN, "new\nline.raw", "cr\rname.raw"])


def hashed(folder: Path, names: list[str], command: str) -> list[str]:
    done = subprocess.run(
        ["sh", "-c", command], cwd=folder, input=names_input(names).encode(),
        capture_output=True, check=True,
    )  # fmt: skip
    return read_digests(done.stdout.decode(), len(names))


def write(folder: Path, names: list[str]) -> list[str]:
    for name in names:
        (folder / name).write_bytes(name.encode() * 3)
    return [hashlib.sha256(name.encode() * 3).hexdigest() for name in names]


@pytest.mark.parametrize("names", [PLAIN, WITH_CONTROLS], ids=["plain", "control-characters"])
def test_the_node_command_gives_each_files_digest_in_order(tmp_path: Path, names: list[str]):
    expected = write(tmp_path, names)
    assert hashed(tmp_path, names, hash_command(names)) == expected
    # nothing was written: a name like `-out` is a file to read, never an option
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    assert [hashlib.sha256((tmp_path / n).read_bytes()).hexdigest() for n in names] == expected


def test_coreutils_is_used_where_openssl_does_not_answer(tmp_path: Path):
    expected = write(tmp_path, PLAIN)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "openssl").write_text("#!/bin/sh\nexit 1\n")
    (fake / "openssl").chmod(0o755)
    command = f"PATH={fake}:$PATH; {hash_command(PLAIN)}"
    assert hashed(tmp_path, PLAIN, command) == expected


def test_names_with_control_characters_are_never_given_to_openssl():
    assert "openssl" not in hash_command(["new\nline.raw"])
    assert "openssl" in hash_command(PLAIN)


@pytest.mark.parametrize(
    ("output", "count"),
    [("garbage\n", 1), (f"{'0' * 64}  a\n", 2), (f"{'0' * 63}  a\n", 1), ("", 1)],
)
def test_anything_but_one_digest_line_per_file_is_an_error(output: str, count: int):
    with pytest.raises(SumsError):
        read_digests(output, count)
