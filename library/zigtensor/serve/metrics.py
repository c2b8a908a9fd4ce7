"""Prometheus metrics for GET /metrics: the HTTP traffic, and the engine's gauges and histograms at scrape time.

HTTP (counted by a middleware, per route):
    zigtensor_http_requests_total{route, method, status}
    zigtensor_http_request_duration_seconds{route}          until the last byte (a stream's whole life)
Engine (read from engine.stats() on each scrape, so they are never stale):
    zigtensor_model_loaded                                  0 while the model loads
    zigtensor_num_requests_waiting, zigtensor_num_requests_running
    zigtensor_kv_blocks_used, zigtensor_kv_blocks_total, zigtensor_kv_cache_usage_ratio
    zigtensor_prompt_tokens_total, zigtensor_generation_tokens_total, zigtensor_preemptions_total
    zigtensor_request_finished_total{reason}                 per completion: stop, length, abort, error
    zigtensor_time_to_first_token_seconds                    histogram, arrival to first token
    zigtensor_inter_token_latency_seconds                    histogram, between tokens of a sequence

Each app has its own registry, so several apps (tests) in one process never share counters.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

FINISH_REASONS = ("stop", "length", "abort", "error")


class EngineCollector:
    """A Prometheus collector that reads the engine's stats() (None while the model loads) on each scrape."""

    def __init__(self, get_engine: Callable[[], object | None]):
        self.get_engine = get_engine

    def collect(self):
        engine = self.get_engine()
        yield GaugeMetricFamily("zigtensor_model_loaded", "1 once the model is loaded and serving",
                                value=0 if engine is None else 1)
        if engine is None:
            return
        stats = engine.stats()
        used, total = stats.get("kv_blocks_used", 0), stats.get("kv_blocks_total", 0)
        for name, doc, value in (
                ("num_requests_waiting", "requests waiting to be scheduled", stats.get("num_waiting", 0)),
                ("num_requests_running", "requests in the running batch", stats.get("num_running", 0)),
                ("kv_blocks_used", "KV-cache blocks in use", used),
                ("kv_blocks_total", "KV-cache blocks in the pool", total),
                ("kv_cache_usage_ratio", "fraction of the KV-cache blocks in use", used / total if total else 0.0)):
            yield GaugeMetricFamily(f"zigtensor_{name}", doc, value=value)
        for name, key, doc in (("prompt_tokens", "prompt_tokens", "prompt tokens received"),
                               ("generation_tokens", "generation_tokens", "tokens generated"),
                               ("preemptions", "num_preemptions", "sequences preempted for lack of KV blocks")):
            if key in stats:
                yield CounterMetricFamily(f"zigtensor_{name}", doc, value=stats[key])
        finished = CounterMetricFamily("zigtensor_request_finished", "completions finished, by reason",
                                       labels=["reason"])
        for reason in FINISH_REASONS:
            if f"finished_{reason}" in stats:
                finished.add_metric([reason], stats[f"finished_{reason}"])
        yield finished
        for name, key, doc in (("time_to_first_token_seconds", "ttft_seconds", "arrival to first token"),
                               ("inter_token_latency_seconds", "inter_token_latency_seconds",
                                "time between two tokens of a sequence")):
            snapshot = stats.get(key)
            if snapshot is not None:
                buckets = [(floatToGoString(bound), count) for bound, count in snapshot["buckets"].items()]
                yield HistogramMetricFamily(f"zigtensor_{name}", doc, buckets=buckets, sum_value=snapshot["sum"])


class ServerMetrics:
    """The registry behind /metrics, and the middleware that counts HTTP requests into it."""

    def __init__(self, get_engine: Callable[[], object | None], routes: set[str]):
        self.registry = CollectorRegistry(auto_describe=True)
        self.routes = routes  # known paths; anything else is counted as route="other" (bounded label values)
        self.requests = Counter("zigtensor_http_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=self.registry)
        self.duration = Histogram("zigtensor_http_request_duration_seconds", "request start to last byte sent",
                                  ["route"], registry=self.registry,
                                  buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
        self.registry.register(EngineCollector(get_engine))

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def middleware(self, app):
        """An ASGI middleware recording each HTTP request's status and duration."""

        async def counted(scope, receive, send):
            if scope["type"] != "http":
                return await app(scope, receive, send)
            route = scope["path"] if scope["path"] in self.routes else "other"
            status = [500]  # if the app dies before it starts a response

            async def send_and_record(message):
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            start = time.perf_counter()
            try:
                await app(scope, receive, send_and_record)
            finally:
                self.requests.labels(route, scope["method"], str(status[0])).inc()
                self.duration.labels(route).observe(time.perf_counter() - start)

        return counted
