"""Fault tests (`make test-faults`): real processes, real signals, real outages."""
