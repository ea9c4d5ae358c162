"""The worker's machinery. `celery -A worker worker` finds the Celery app here."""

from worker.celery_app import app

__all__ = ["app"]
