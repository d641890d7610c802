"""One persistent SSH connection per node (``connection``) and the transfers over its SFTP
session, checked by SHA-256 on both sides (``transfer``)."""
