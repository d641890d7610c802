"""Where the pueue output samples live: ``tests/data/pueue-samples`` (provenance in its README)."""

from __future__ import annotations

from pathlib import Path

PUEUE_SAMPLES = Path(__file__).resolve().parent / "data" / "pueue-samples"
