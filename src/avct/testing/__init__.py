"""Helpers for tests and benchmarks (deterministic weights in the official layout)."""
