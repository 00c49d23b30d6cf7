"""Prometheus metrics: one registry, the names every subsystem reports under."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.0, 2.5, 5.0)

_QUERY_BUCKETS = (0, 1, 2, 3, 4, 6, 8, 12, 20, 50)


class _Buckets:
    """One histogram's counts: ``counts[i]`` holds observations in (bounds[i-1], bounds[i]]."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def add_to(self, family: HistogramMetricFamily, labels: list[str]) -> None:
        cumulative = list(accumulate(self.counts))
        edges = [floatToGoString(bound) for bound in self.bounds] + ["+Inf"]
        family.add_metric(labels, list(zip(edges, cumulative, strict=True)), self.total)


class RequestMetrics:
    """Per HTTP request: its count by route and status, its latency, and its database queries
    and time. Counted in plain dicts and lists by ``KabarMiddleware`` on the event loop, and
    turned into Prometheus families when scraped: a prometheus_client ``observe`` takes a lock
    and walks the buckets, and four of them cost more than a hot request's own work."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], int] = {}
        self.latency: dict[tuple[str, str], _Buckets] = {}
        self.queries = _Buckets(_QUERY_BUCKETS)
        self.db_seconds = _Buckets(_LATENCY_BUCKETS)

    def record(self, method: str, route: str, status: int, seconds: float, queries: int, db_seconds: float) -> None:
        key = (method, route, str(status))
        self.requests[key] = self.requests.get(key, 0) + 1
        latency = self.latency.get(key[:2])
        if latency is None:
            latency = self.latency[key[:2]] = _Buckets(_LATENCY_BUCKETS)
        latency.observe(seconds)
        self.queries.observe(queries)
        self.db_seconds.observe(db_seconds)

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("kabar_http_requests_total", "HTTP requests", labels=["method", "route", "status"])
        for key, count in list(self.requests.items()):
            requests.add_metric(list(key), count)
        latency = HistogramMetricFamily("kabar_http_request_seconds", "HTTP request latency", labels=["method", "route"])
        for key, buckets in list(self.latency.items()):
            buckets.add_to(latency, list(key))
        queries = HistogramMetricFamily("kabar_db_queries_per_request", "Database queries per HTTP request")
        self.queries.add_to(queries, [])
        db_seconds = HistogramMetricFamily("kabar_db_seconds_per_request", "Database time per HTTP request")
        self.db_seconds.add_to(db_seconds, [])
        yield from (requests, latency, queries, db_seconds)


HTTP = RequestMetrics()
REGISTRY.register(HTTP)
JOBS_FINISHED = Counter("kabar_jobs_finished_total", "Job executions by outcome", ["kind", "outcome"], registry=REGISTRY)
JOB_SECONDS = Histogram("kabar_job_seconds", "Job run time", ["kind"], buckets=_LATENCY_BUCKETS, registry=REGISTRY)
JOBS_BACKLOG = Gauge("kabar_jobs", "Jobs in the queue by status", ["status"], registry=REGISTRY)
WEBHOOKS_RECEIVED = Counter(
    "kabar_webhooks_received_total", "Inbound provider webhooks by outcome", ["provider", "outcome"], registry=REGISTRY
)
INGEST_LAG = Histogram(
    "kabar_ingest_lag_seconds", "Provider timestamp to commit", buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300), registry=REGISTRY
)
REALTIME_SOCKETS = Gauge("kabar_realtime_sockets", "Open realtime connections", registry=REGISTRY)


def render() -> bytes:
    return generate_latest(REGISTRY)
