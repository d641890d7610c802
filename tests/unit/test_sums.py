"""sha256sum's format, read from and written for the real coreutils sha256sum."""

import hashlib
import subprocess
from pathlib import Path

import pytest

from mqi_es.sums import SumsError, check_lines, parse_sums

AWKWARD = ["plain.dcm", "with space.dcm", "back\\slash.dcm", "new\nline.raw", "cr\rname.raw",
           "é 日本.mhd", "  leading.txt"]  # fmt: skip


def test_what_sha256sum_prints_for_any_name_reads_back_to_that_name_and_digest(tmp_path: Path):
    for name in AWKWARD:
        (tmp_path / name).write_bytes(name.encode() * 3)
    done = subprocess.run(
        ["sha256sum", "--", *AWKWARD], cwd=tmp_path, capture_output=True, check=True
    )

    found = parse_sums(done.stdout.decode())

    assert found == [(n, hashlib.sha256(n.encode() * 3).hexdigest()) for n in AWKWARD]


def test_the_lines_we_write_are_what_sha256sum_checks(tmp_path: Path):
    names = [n for n in AWKWARD if "\n" not in n and "\r" not in n]
    for name in names:
        (tmp_path / name).write_bytes(b"x" + name.encode())
    lines = check_lines((n, hashlib.sha256(b"x" + n.encode()).hexdigest()) for n in names)

    ok = subprocess.run(["sha256sum", "--check", "--strict", "--quiet", "-"], cwd=tmp_path,
                        input=lines.encode(), capture_output=True)  # fmt: skip
    (tmp_path / "back\\slash.dcm").write_bytes(b"changed")
    bad = subprocess.run(["sha256sum", "--check", "--strict", "--quiet", "-"], cwd=tmp_path,
                         input=lines.encode(), capture_output=True)  # fmt: skip

    assert ok.returncode == 0, ok.stderr
    assert bad.returncode == 1 and bad.stdout.decode() == "back\\slash.dcm: FAILED\n"


def test_a_name_with_a_control_character_is_never_written_for_a_check():
    with pytest.raises(ValueError, match="control characters"):
        check_lines([("new\nline", "0" * 64)])


@pytest.mark.parametrize("output", ["garbage\n", "abc  name\n", f"{'0' * 64} name\n"])
def test_output_that_is_not_sha256sums_is_an_error(output: str):
    with pytest.raises(SumsError):
        parse_sums(output)


def test_no_output_is_no_file():
    assert parse_sums("") == []
