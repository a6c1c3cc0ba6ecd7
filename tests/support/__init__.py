"""Helpers imported by training subprocesses that the tests start (put on PYTHONPATH by the tests)."""
