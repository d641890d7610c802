"""How the files of one transfer fail together: one clear error, never an exception group."""

import asyncio

import pytest

from mqi_es.adapters.ssh.transfer._shared import _each
from mqi_es.adapters.ssh.transfer.case_reader import TransferRefused


async def failing(item: str) -> None:
    await asyncio.sleep(0.01 if item == "late" else 0)
    if item.startswith("refused"):
        raise TransferRefused(f"{item} changed while it was being sent")
    if item.startswith("disk"):
        raise OSError(28, "No space left on device")
    if item.startswith("name"):
        raise UnicodeError("a remote name that is not UTF-8")


@pytest.mark.parametrize(
    ("items", "raised"),
    [
        (["disk", "refused"], TransferRefused),  # both at once: the refusal wins (a hold)
        (["refused", "disk"], TransferRefused),
        (["name", "late"], UnicodeError),  # an error the callers expect, as itself
        (["disk", "name"], OSError),
    ],
)
def test_failures_of_files_in_flight_surface_as_one_error(items: list[str], raised: type):
    with pytest.raises(raised):
        asyncio.run(_each(items, failing, parallel=len(items)))
