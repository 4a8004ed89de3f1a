"""The read-through cache, tested with nothing but the respd plugin's fixture."""

from __future__ import annotations

from tests.sample_app.cache import Cache


class SlowPrices:
    """Stands for an expensive computation; counts how often it really runs."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, product: str) -> dict[str, object]:
        self.calls += 1
        return {"product": product, "price": 100 + len(product)}


def test_the_slow_function_runs_once_per_argument(respd):
    prices = SlowPrices()
    cache = Cache(respd.client(), prices, "price", ttl=60)
    assert cache.get("tea") == {"product": "tea", "price": 103}
    assert cache.get("tea") == {"product": "tea", "price": 103}
    assert cache.get("coffee")["price"] == 106
    assert prices.calls == 2


def test_cached_results_have_the_ttl(respd):
    r = respd.client()
    Cache(r, SlowPrices(), "price", ttl=60).get("tea")
    assert 0 < r.ttl("price:tea") <= 60


def test_invalidate_recomputes(respd):
    prices = SlowPrices()
    cache = Cache(respd.client(), prices, "price")
    cache.get("tea")
    assert cache.invalidate("tea") is True
    assert cache.invalidate("tea") is False
    cache.get("tea")
    assert prices.calls == 2


def test_the_cache_starts_empty_in_each_test(respd):
    prices = SlowPrices()
    Cache(respd.client(), prices, "price").get("tea")
    assert prices.calls == 1  # nothing left over from the tests above
