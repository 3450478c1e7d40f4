"""Prefect wiring and the ``tamrf`` command line: each task calls one library function."""
