"""The databases of the cache: keys to values, and keys to absolute expiry times."""

from __future__ import annotations


class Database:
    """One numbered database."""

    __slots__ = ("data", "expires")

    def __init__(self) -> None:
        self.data: dict[bytes, object] = {}  # key -> value
        self.expires: dict[bytes, int] = {}  # key -> absolute expiry, ms since the epoch


class Keyspace:
    """The numbered databases (16 by default) that SELECT chooses among."""

    def __init__(self, count: int) -> None:
        self.dbs = [Database() for _ in range(count)]
