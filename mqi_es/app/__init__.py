"""The application: the Ledger (one method per recorded fact, over the event log), the
ports the shell talks to the world through, the message bus that records typed commands
(``mqi_es.core.commands``) and what follows from them, remote dispatch (actions carried
out on the hosts, their outcomes recorded) and the intake's recorder.

May import the core, the domain, the configuration and the adapters; never the runtime,
the composition root, the views (``projections``) or the command line (``cli``).
"""
