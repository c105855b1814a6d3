"""The least-recently-used mapping the whole-pipeline CUDA graphs keep their keys in."""

from __future__ import annotations

import pytest

from trtdet.lru import LRU


def test_lru_keeps_the_most_recently_used_and_returns_what_it_drops():
    cache: LRU[str, int] = LRU(2)
    assert cache.put("a", 1) == [] and cache.put("b", 2) == []
    assert cache.get("a") == 1  # "a" is now the most recent
    assert cache.put("c", 3) == [2]
    assert cache.keys() == ["a", "c"] and "b" not in cache and len(cache) == 2
    assert cache.get("b") is None
    assert cache.clear() == [1, 3] and len(cache) == 0
    with pytest.raises(ValueError, match="capacity: expected >= 1, got 0"):
        LRU(0)
