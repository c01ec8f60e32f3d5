"""Trace-driven replay of launches through the broker's real router against simulated members.

Run ``python -m benchmarks.replay --help``; BENCHMARKS.md ("Routing quality") describes the trace format,
the simulated federation, the metrics and the results.
"""
