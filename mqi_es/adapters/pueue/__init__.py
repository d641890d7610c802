"""A GPU node running pueue: every pueue concept lives here (groups, paused groups and their
resume, kill versus remove, labels, versions, ``env -i``).

``parse`` reads what pueue prints, ``commands`` builds what we send it, ``host`` is the
``RemoteHost`` over one SSH connection.
"""
