"""MQI Communicator's service: cases from a watch folder to GPU nodes and back, on record.

Layers, each allowed to import only those below it (pyproject.toml's import contracts,
checked by ``lint-imports`` in the test suite):

    bootstrap.py the composition root: a configuration in, a daemon wired to adapters out
    runtime.py   the tick: poll, decide, record, act, with every fault contained
    app/         the application: the Ledger over the event log, the ports, the message
                 bus, remote dispatch, the intake's recorder
    adapters/    the world: pueue hosts, SSH and transfers, the watch folder, the event
                 store, local files (clock, lock, logs, progress)
    config/      the strict configuration
    domain/      the aggregates: what may happen to a case, a slot, a host
    core/        the pure decision core and its vocabulary: no I/O, no clock, no randomness

``sandbox/`` is a stand-in GPU node for the demo and the tests; nothing else imports it.
"""

import warnings

# asyncssh defines its DSA key classes at import, which cryptography 51 deprecates loudly:
# five lines on every start of every command, about keys this program never uses.
warnings.filterwarnings("ignore", message="DSA is deprecated")
