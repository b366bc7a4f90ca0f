"""Amazon's Selling Partner API in the ingest: the connect flow (routes.py), the worker
that reads orders, catalogue categories and the performance report (worker.py), and the
operator's commands (cli.py). docs/amazon.md is the guide."""
