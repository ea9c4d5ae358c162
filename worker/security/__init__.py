"""Secrets and authority: the dashboard's hashes, sealed fields and their keys, request
fingerprints, the guessing limits, Redis ACL users, and the eviction check that keeps counts."""
