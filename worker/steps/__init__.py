"""Bootsteps the worker adds to Celery's: drain on shutdown, liveness notes, the metrics server
and the outbox relay. Each is registered in `worker/app.py`."""
