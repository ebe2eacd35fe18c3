"""Chaos tests: a 3-server, 2-worker Belfry cluster on a private PostgreSQL, under faults."""
