"""Benchmarks for expertbot: `python -m bench` runs them all, `python -m bench NAME` one of them.

Each benchmark module has NAME and run(ctx) -> list[Row]; every figure is measured beside its
baseline in the same run. Figures go into BENCHMARKS.md by hand, with the machine and the date.
Benchmarks are not tests: nothing asserts a time. Importing this package loads nothing heavy.
"""
