"""Prometheus metrics: one table of definitions, read from live objects at scrape time.

Names follow Prometheus practice: the torswitch_ prefix, base units (bytes, seconds), _total on
counters, labels only from small fixed sets (reason). The collector reads the engine's and the
cache's counters when scraped; nothing is copied on the data path.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from torswitch.blockcache import BlockCache
    from torswitch.engine import BlockEngine

# (name, kind, help, source): source is an attribute of EngineStats ("e.") or CacheStats ("c.").
METRICS: tuple[tuple[str, str, str, str], ...] = (
    ("torswitch_engine_connections_total", "counter", "Intercepted connections accepted.", "e.connections"),
    ("torswitch_engine_hits_total", "counter", "READ_BLOCK ops served from the cache.", "e.hits"),
    ("torswitch_engine_misses_total", "counter", "READ_BLOCK ops relayed to a DataNode.", "e.misses"),
    ("torswitch_engine_cache_served_bytes_total", "counter", "Block bytes served from the cache.", "e.bytes_from_cache"),
    ("torswitch_engine_uplink_bytes_total", "counter", "Bytes relayed from DataNodes over the uplink.", "e.bytes_from_upstream"),
    ("torswitch_engine_single_flight_waits_total", "counter", "Misses that waited for another client's fetch of the same block.", "e.single_flight_waits"),
    ("torswitch_engine_token_checks_total", "counter", "Block tokens checked with a DataNode before a hit.", "e.token_checks"),
    ("torswitch_engine_token_rejections_total", "counter", "Block tokens a DataNode refused.", "e.token_rejections"),
    ("torswitch_engine_upstream_errors_total", "counter", "Failed DataNode connections or relays.", "e.upstream_errors"),
    ("torswitch_engine_client_errors_total", "counter", "Client connections dropped on a protocol error.", "e.client_errors"),
    ("torswitch_cache_segments_inserted_total", "counter", "Verified segments stored.", "c.inserted_segments"),
    ("torswitch_cache_segments_rejected_total", "counter", "Segments refused for failed or impossible verification.", "c.rejected_segments"),
    ("torswitch_cache_segments_not_admitted_total", "counter", "Segments the admission policy refused.", "c.not_admitted_segments"),
    ("torswitch_cache_evictions_total", "counter", "Blocks evicted.", "c.evicted_blocks"),
    ("torswitch_cache_corrupt_segments_total", "counter", "Stored segments that failed re-verification.", "c.corrupt_segments"),
    ("torswitch_cache_used_bytes", "gauge", "Bytes of data and checksums cached.", "c.used_bytes"),
    ("torswitch_cache_capacity_bytes", "gauge", "Cache capacity.", "c.capacity_bytes"),
    ("torswitch_cache_blocks", "gauge", "Blocks with at least one cached segment.", "c.blocks"),
)

# Set by `torswitch run` (--dataplane or --dataplane-control) for its engine: the data plane's
# stats file, whose counters the engine's /metrics then carries too (torswitch_dataplane_*).
DATAPLANE_STATS_ENV = "TORSWITCH_DATAPLANE_STATS"

TTFB_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class EngineCollector(Collector):
    """Reads a BlockEngine and its BlockCache at scrape time."""

    def __init__(self, engine: BlockEngine, cache: BlockCache) -> None:
        self.engine = engine
        self.cache = cache
        self.prefetched_bytes: Callable[[], int] = lambda: 0  # set when a prefetcher runs
        self.dataplane_stats: str | None = os.environ.get(DATAPLANE_STATS_ENV)
        self._hist = {True: [0] * (len(TTFB_BUCKETS_S) + 1), False: [0] * (len(TTFB_BUCKETS_S) + 1)}
        self._sum = {True: 0.0, False: 0.0}

    def _drain_ttfb(self) -> None:
        for hit, samples in ((True, self.engine.stats.hit_ttfb_s), (False, self.engine.stats.miss_ttfb_s)):
            taken = samples[:]
            del samples[: len(taken)]
            for s in taken:
                self._sum[hit] += s
                for i, bound in enumerate(TTFB_BUCKETS_S):
                    if s <= bound:
                        self._hist[hit][i] += 1
                        break
                else:
                    self._hist[hit][-1] += 1

    def _dataplane(self) -> Iterator[Metric]:
        """The DPDK data plane's counters, read from its stats file at scrape time."""
        if not self.dataplane_stats:
            return
        from torswitch.dataplane import DataplaneError, parse_counters

        try:
            with open(self.dataplane_stats) as f:
                counters = parse_counters(f.read())
        except (OSError, DataplaneError):
            return  # restarting: no sample beats a stale or broken one
        per_port: dict[str, CounterMetricFamily] = {}
        for port, values in counters.ports.items():
            for name, value in values.items():
                family = per_port.get(name)
                if family is None:
                    family = per_port[name] = CounterMetricFamily(
                        f"torswitch_dataplane_{name}",
                        counters.help.get(name, f"Data plane per-port counter {name}."),
                        labels=["port"])
                family.add_metric([port], float(value))
        yield from per_port.values()
        for name, value in counters.totals.items():
            kind = GaugeMetricFamily if counters.types.get(name) == "gauge" else CounterMetricFamily
            yield kind(f"torswitch_dataplane_{name}",
                       counters.help.get(name, f"Data plane counter {name}."), value=float(value))

    def collect(self) -> Iterator[Metric]:
        e, c = self.engine.stats, self.cache.stats
        for name, kind, help_text, source in METRICS:
            obj = e if source.startswith("e.") else c
            value = float(getattr(obj, source[2:]))
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            yield family(name.removesuffix("_total") if kind == "counter" else name, help_text, value=value)
        yield CounterMetricFamily("torswitch_engine_prefetched_bytes",
                                  "Block bytes fetched ahead of demand (hints, torswitch cache "
                                  "prefetch).", value=float(self.prefetched_bytes()))
        yield CounterMetricFamily("torswitch_engine_filled_bytes",
                                  "Block bytes fetched after a miss to complete partly read "
                                  "segments.", value=float(e.bytes_filled))
        passthrough = CounterMetricFamily("torswitch_engine_passthrough_connections",
                                          "Connections spliced to the DataNode, by reason.",
                                          labels=["reason"])
        for reason, count in e.passthrough.items():
            passthrough.add_metric([reason], float(count))
        yield passthrough
        yield from self._dataplane()
        self._drain_ttfb()
        for hit, name in ((True, "hit"), (False, "miss")):
            counts = self._hist[hit]
            buckets, total = [], 0
            for bound, n in zip((*TTFB_BUCKETS_S, float("inf")), counts, strict=True):
                total += n
                buckets.append(("+Inf" if bound == float("inf") else str(bound), float(total)))
            yield HistogramMetricFamily(f"torswitch_engine_{name}_ttfb_seconds",
                                        f"Time to the first byte of a {name}'s reply.",
                                        buckets=buckets, sum_value=self._sum[hit])
