"""The pure decision core: what to record and do next, from what is recorded and seen.

States, identities, errors, the remote vocabulary (tasks, observations, outcomes), the
policy, the decisions (``reconcile``, ``reactions``) and the shell words for a remote
command. No I/O, no clock reads, no randomness: every lifecycle rule is a function tested
exhaustively. Imports the standard library and msgspec only.
"""
