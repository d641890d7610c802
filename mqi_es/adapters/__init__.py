"""Everything that talks to the world, behind the application's ports.

``pueue/`` a GPU node running pueue; ``ssh/`` the one connection per node and the
transfers over it; ``watch/`` the watch folder; ``eventstore/`` where the log lives and how
events are encoded; ``local/`` this machine's files (the lock, logs, the live board).
Adapters import the core, the configuration and their libraries; never the application or
the runtime. Nothing the node or the network does makes an adapter method raise: every
remote outcome is a result, a remote failure or unknown.
"""
