"""Celery's side of the broker: the transport, the consumer, the checks a message passes before
it becomes a task request, what Celery may show of it, and the task base both commands share."""
