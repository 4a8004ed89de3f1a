"""A read-through cache in Redis in front of a slow function."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


class Cache:
    """Results of `function(argument)` kept in Redis as JSON under `<prefix>:<argument>`
    for `ttl` seconds, so the slow function runs once per argument and period."""

    def __init__(self, client: Any, function: Callable[[str], Any], prefix: str,
                 ttl: int = 60) -> None:
        self.client = client
        self.function = function
        self.prefix = prefix
        self.ttl = ttl

    def key(self, argument: str) -> str:
        return f"{self.prefix}:{argument}"

    def get(self, argument: str) -> Any:
        """The cached result, computing and storing it on a miss."""
        key = self.key(argument)
        cached = self.client.get(key)
        if cached is not None:
            return json.loads(cached)
        value = self.function(argument)
        self.client.set(key, json.dumps(value), ex=self.ttl)
        return value

    def invalidate(self, argument: str) -> bool:
        """Forget one result (after the data behind it changed); True if it was cached."""
        return bool(self.client.delete(self.key(argument)))
