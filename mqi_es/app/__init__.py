"""The application: the Ledger (one command per recorded fact, over the event log), the
ports the shell talks to the world through, and the command bus.

May import the core, the domain, the configuration and the event store's codec; never the
runtime, the views (``projections``) or the command line (``cli``).
"""
