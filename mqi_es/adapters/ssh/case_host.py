"""What every backend reached over SSH shares: the case folders on the node.

Uploads (all or nothing, checked on the node against the digests of what was read here),
result downloads (checked against the node's digests), the removal of a case folder and
the free space where cases go. A backend's host adapter (pueue, Slurm) adds its queue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from mqi_es.adapters.ssh.connection import HostConnection
from mqi_es.adapters.ssh.node_files import free_bytes, remove_folder
from mqi_es.adapters.ssh.transfer import (
    NoMatches,
    TransferFailed,
    Transferred,
    TransferRefused,
    download_results,
    upload_dir,
)
from mqi_es.config.schema import HostConfig
from mqi_es.core.outcome import Ok, Progress, RemoteFailure, Unknown
from mqi_es.core.reactions import Fetched, NothingToFetch, Unsendable, Unwritable, Uploaded

log = logging.getLogger(__name__)

_REFUSED_BY_TRANSFER = 1  # the exit status a RemoteFailure from a refused transfer carries


class SshCaseHost:
    """The case folders of ``host`` over ``connection`` (closed by ``close()``)."""

    def __init__(
        self, host: HostConfig, connection: HostConnection, *, results_globs: tuple[str, ...]
    ) -> None:
        self.name = host.name
        self.connection = connection
        self.host_config = host
        self._parallel = host.max_parallel_transfers
        self._globs = results_globs

    async def upload(
        self,
        local_dir: Path,
        remote_dir: str,
        *,
        still_registered: Callable[[], str | None] | None = None,
        progress: Progress | None = None,
    ) -> Uploaded | Unsendable | RemoteFailure | Unknown:
        """Copy a case folder to ``remote_dir`` (``~/`` is the remote home), all or nothing,
        verified on the node against the digests of what was read here."""
        try:
            moved = await upload_dir(
                self.connection,
                local_dir,
                remote_dir,
                parallel=self._parallel,
                progress=progress,
                still_registered=still_registered,
            )
        except TransferRefused as exc:
            return Unsendable(str(exc))
        except OSError as exc:  # the local case folder, read before anything is sent
            return Unsendable(f"the case folder cannot be read: {exc.strerror or exc}")
        result: Uploaded | Unsendable | RemoteFailure | Unknown
        match moved:
            case Transferred(files=files, bytes=size, seconds=seconds):
                result = Uploaded(files, size, seconds, moved.digests, moved.manifest_sha256)
            case TransferFailed(reason=reason, local=True):
                result = Unsendable(f"the case folder cannot be read here: {reason}")
            case TransferFailed(reason=reason):
                result = RemoteFailure(_REFUSED_BY_TRANSFER, reason)
            case Unknown():
                result = moved
        log.debug("%s: upload: %s", self.name, type(result).__name__)
        return result

    async def fetch(
        self, remote_dir: str, local_dir: Path, *, progress: Progress | None = None
    ) -> Fetched | NothingToFetch | Unwritable | RemoteFailure | Unknown:
        """Download the result files of ``remote_dir`` into ``local_dir``, all or nothing."""
        moved = await download_results(
            self.connection,
            remote_dir,
            self._globs,
            local_dir,
            parallel=self._parallel,
            progress=progress,
        )
        result: Fetched | NothingToFetch | Unwritable | RemoteFailure | Unknown
        match moved:
            case Transferred(files=files, bytes=size):
                result = Fetched(files, size, str(local_dir), moved.digests, moved.manifest_sha256)
            case NoMatches(globs=globs):
                result = NothingToFetch(globs)
            case TransferFailed(reason=reason, local=True):
                # The results are safe on the node: fetch again once this machine can
                # take them, rather than failing the case.
                result = Unwritable(f"results cannot be written here: {reason}")
            case TransferFailed(reason=reason):
                result = RemoteFailure(_REFUSED_BY_TRANSFER, reason)
            case Unknown():
                result = moved
        log.debug("%s: fetch: %s", self.name, type(result).__name__)
        return result

    async def remove_folder(self, folder: str) -> Ok | RemoteFailure | Unknown:
        return await remove_folder(self.connection, folder)

    async def free_space(self) -> int | RemoteFailure | Unknown:
        return await free_bytes(self.connection, self.host_config.remote_base_dir)

    async def close(self) -> None:
        await self.connection.close()
