"""torswitch.metrics: every defined metric is exported with the engine's and cache's values."""

from __future__ import annotations

import pathlib

from prometheus_client import CollectorRegistry, generate_latest

from torswitch.blockcache import BlockCache
from torswitch.engine import BlockEngine
from torswitch.metrics import METRICS, EngineCollector


def test_collector_exports_every_metric(tmp_path: pathlib.Path) -> None:
    cache = BlockCache(tmp_path / "c", capacity_bytes=4 << 20)
    engine = BlockEngine(cache)
    engine.stats.hits = 7
    engine.stats.passthrough["sasl"] = 2
    engine.stats.observe_ttfb(True, 0.002)
    engine.stats.observe_ttfb(False, 0.03)
    registry = CollectorRegistry()
    collector = EngineCollector(engine, cache)
    collector.prefetched_bytes = lambda: 12345
    registry.register(collector)
    text = generate_latest(registry).decode()
    for name, _, _, _ in METRICS:
        assert f"\n{name} " in text or text.startswith(f"{name} "), name
    assert "torswitch_engine_hits_total 7.0" in text
    assert 'torswitch_engine_passthrough_connections_total{reason="sasl"} 2.0' in text
    assert "torswitch_engine_prefetched_bytes_total 12345.0" in text
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
              if line and not line.startswith("#")}
    assert values["torswitch_cache_capacity_bytes"] == 4 << 20
    assert 'torswitch_engine_hit_ttfb_seconds_bucket{le="0.0025"} 1.0' in text
    assert "torswitch_engine_miss_ttfb_seconds_count 1.0" in text
    cache.close()


STATS = """\
# HELP tsw_dataplane_rx_packets_total frames received on the port
# TYPE tsw_dataplane_rx_packets_total counter
tsw_dataplane_rx_packets_total{port="0",name="net_af_packet0",role="rack"} 12
tsw_dataplane_rx_packets_total{port="1",name="net_af_packet1",role="uplink"} 3
# HELP tsw_dataplane_steered_total frames steered to the exception (tap) port
tsw_dataplane_steered_total{port="0",name="net_af_packet0",role="rack"} 5
tsw_dataplane_mac_learned_total 7
# HELP tsw_dataplane_mc_cache_entries live entries of the hot-key cache
# TYPE tsw_dataplane_mc_cache_entries gauge
tsw_dataplane_mc_cache_entries 4
"""


def test_dataplane_counters_are_reexported(tmp_path: pathlib.Path) -> None:
    stats = tmp_path / "stats.prom"
    stats.write_text(STATS)
    cache = BlockCache(tmp_path / "c", capacity_bytes=4 << 20)
    collector = EngineCollector(BlockEngine(cache), cache)
    collector.dataplane_stats = str(stats)
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    assert 'torswitch_dataplane_rx_packets_total{port="net_af_packet0"} 12.0' in text
    assert 'torswitch_dataplane_steered_total{port="net_af_packet0"} 5.0' in text
    assert "torswitch_dataplane_mac_learned_total 7.0" in text
    assert "# TYPE torswitch_dataplane_mc_cache_entries gauge" in text
    assert "torswitch_dataplane_mc_cache_entries 4.0" in text
    stats.write_text("garbage line\n")  # a broken file yields no data-plane samples, no error
    assert "torswitch_dataplane" not in generate_latest(registry).decode()
    cache.close()
