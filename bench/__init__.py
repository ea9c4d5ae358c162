"""`make bench`: the worker measured against Celery's no-op ceiling and bcrypt's (BENCHMARKS.md)."""
