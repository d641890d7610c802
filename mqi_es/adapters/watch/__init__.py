"""The watch folder: case names, fingerprints and the stability gate (``case_dir``), and
the intake that reports each case exactly once (``intake``)."""
