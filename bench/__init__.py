"""``make bench``: vtrwatch's throughput and latency next to the ceiling of its stack.

Never part of ``make test``. See ``docs/performance.md`` for the latest figures.
"""
