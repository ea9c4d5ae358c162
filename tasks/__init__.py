"""The two commands: thin Celery tasks (entrypoints) and the rules they apply (handlers)."""
