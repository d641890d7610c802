"""Case upload and result download over a node's shared SFTP session, with proof of content.

Both directions write into a temporary sibling ``<dir>.part-<random>``, check every size and
every SHA-256, write a manifest (``.mqi-manifest.json``: each file, its size, mtime and
SHA-256) LAST, and then rename the folder to ``<dir>``. So a folder without ``.part-`` is
complete, a partial copy never looks complete, and a retry either finds the complete folder
(accepted once its manifest matches, every listed size checks out and its digests verify:
no second copy) or removes the stale ``.part-*`` siblings, those of any earlier attempt
too, and starts again. One transfer per destination at a time: the caller (one daemon, one
attempt per case) guarantees it.

Upload: each file is read once (``case_reader``: never through a link, hashed as read,
checked unchanged before and after), sent, and the node checks the whole copy against
those digests (it hashes its copy, over the same connection) before it is published. A
file that changed while it was read, a copy that differs on the node, or a case that no
longer matches its registration (``still_registered``) is ``TransferRefused``: the case is
held and sent again once stable, never run torn. Download: the node's own ``sha256sum`` of
every result, then each local copy hashed and compared before the download is published.

Files travel in parallel (``parallel`` at once; ``sftp.put(recurse=True)`` would copy one
at a time) with asyncssh's default block size (larger blocks make OpenSSH drop the session).

Case contents: symbolic links are followed, so the node receives what they point to, as
plain files and folders. A link that leads outside the case, a broken link, a loop, a
special file (FIFO, socket, device), a file name that is not UTF-8 or holds a control
character, or the reserved manifest name raise `TransferRefused` before anything is sent.
Remote symlinks are never followed when downloading (a result is a regular file).

Outcomes, never asyncssh exceptions:
    Transferred      done (or found complete already: ``reused``), with every digest
    NoMatches        download only: no remote file matched the globs
    TransferFailed   the node or the local disk refused: permission, no space, sizes differ
    Unknown          connection lost or not available, or results that arrived different
                     from the node's: retry later
"""

from __future__ import annotations

from mqi_es.adapters.ssh.transfer._download import download_results
from mqi_es.adapters.ssh.transfer._shared import (
    MANIFEST,
    NoMatches,
    Progress,
    TransferFailed,
    Transferred,
)
from mqi_es.adapters.ssh.transfer._upload import upload_dir
from mqi_es.adapters.ssh.transfer.case_reader import TransferRefused
from mqi_es.core.reactions import Digests

__all__ = [
    "MANIFEST",
    "Digests",
    "NoMatches",
    "Progress",
    "TransferFailed",
    "TransferRefused",
    "Transferred",
    "download_results",
    "upload_dir",
]
