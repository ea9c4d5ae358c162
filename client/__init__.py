"""The producer's client: enqueue the two commands. Needs only Redis; no database code."""

from client.producer import AccountResetClient
from client.settings import ClientSettings

__all__ = ["AccountResetClient", "ClientSettings"]
