"""What leaves a command after its commit: the result event, the outbox relay that republishes
what a crash left unpublished, the dead letters, and the dashboard's own cache and metrics."""
