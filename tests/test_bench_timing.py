"""The benchmark timing helpers: what each calls, in which order, and the medians they report."""

from __future__ import annotations

import pytest

from zigtensor.bench import timing


@pytest.fixture
def clock(monkeypatch):
    """A fake perf_counter that advances by whatever the timed function adds; no sleeping."""
    state = {"t": 0.0}
    monkeypatch.setattr(timing.time, "perf_counter", lambda: state["t"])
    monkeypatch.setattr(timing.time, "sleep", lambda s: None)
    return state


def test_median_in_blocks_alternates_the_order_and_times_each_alone(clock):
    calls = []

    def fn(name, cost):
        def run():
            calls.append(name)
            clock["t"] += cost
        return run

    a, b = fn("a", 2.0), fn("b", 5.0)
    assert timing.median_in_blocks([a, b], repeats=6, blocks=3) == [2.0, 5.0]
    # each block: one untimed call, then 2 timed ones; rounds alternate a-first, b-first
    blocks = ["a"] * 3 + ["b"] * 3 + ["b"] * 3 + ["a"] * 3 + ["a"] * 3 + ["b"] * 3
    assert calls == blocks


def test_median_in_blocks_has_at_least_one_call_per_block(clock):
    seen = []
    timing.median_in_blocks([lambda: seen.append(1)], repeats=2, blocks=5)
    assert len(seen) == 2 * 2  # blocks capped at repeats: 2 blocks of (1 untimed + 1 timed)
