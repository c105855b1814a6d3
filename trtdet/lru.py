"""A small least-recently-used mapping that hands back what it drops (so the caller can release it)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    """A mapping that keeps its ``capacity`` most recently used entries; ``put`` returns those it dropped."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity: expected >= 1, got {capacity}")
        self.capacity = capacity
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> list[V]:
        self._items[key] = value
        self._items.move_to_end(key)
        dropped = []
        while len(self._items) > self.capacity:
            dropped.append(self._items.popitem(last=False)[1])
        return dropped

    def values(self) -> list[V]:
        return list(self._items.values())

    def keys(self) -> list[K]:
        return list(self._items.keys())

    def pop(self, key: K) -> V | None:
        return self._items.pop(key, None)

    def clear(self) -> list[V]:
        values = list(self._items.values())
        self._items.clear()
        return values

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Any:
        return iter(list(self._items))
