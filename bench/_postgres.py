"""Postgres for the benchmarks: each works in a database of its own."""

from urllib.parse import urlparse, urlunparse


def database_create(url: str) -> None:
    """Create the database `url` names, unless it exists (connecting to the server's `postgres` database)."""
    import psycopg

    parts = urlparse(url)
    name = parts.path.lstrip("/")
    with psycopg.connect(urlunparse(parts._replace(path="/postgres")), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
