"""What the tests share: where the shared data lives (shared_files), the golden parity arrays
(parity_data), a tiny real training dataset (tiny_dataset), training-stage helpers (stage_helpers),
the live server and the headless browser of the serving tests. Importable as ``support.*`` through
``pythonpath`` in pyproject's pytest options."""
