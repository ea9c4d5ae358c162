"""What operators run and read: the `account-reset` command, metrics, and the health notes."""
