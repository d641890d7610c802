"""The projector: every event class the views know, folded by ``projections.fold``.

Importing this module registers the folds of cases, of slots and hosts, and of alarms and
notifications; ``ViewStore`` applies batches of events through ``Batch``.
"""

from __future__ import annotations

from projections import fold_cases, fold_records, fold_resources
from projections.fold import HANDLERS, Batch, Row

FOLDS = (fold_cases, fold_resources, fold_records)  # each registers its handlers on import

__all__ = ["FOLDS", "HANDLERS", "Batch", "Row"]
