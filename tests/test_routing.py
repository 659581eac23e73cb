"""torswitch.routing: the native ring against the pure-Python reference ring (hypothesis),
nutcracker's server ordering, overrides, liveness, atomic publication."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torswitch import routing
from torswitch.config import Server
from torswitch.errors import ConfigError
from torswitch.oracles.ref_ring import RefRing

DETERMINISTIC = ("ketama", "modula", "rendezvous")


def servers_strategy() -> st.SearchStrategy[list[Server]]:
    server = st.builds(
        Server,
        host=st.sampled_from(["198.18.0.1", "198.18.0.2", "10.1.1.1", "cache-a", "cache-bb"]),
        port=st.sampled_from([11211, 11212, 22122]),
        weight=st.integers(min_value=1, max_value=6),
        name=st.one_of(st.none(), st.text("abcdefghij0123456789-", min_size=1, max_size=12)),
    )
    return st.lists(server, min_size=1, max_size=9, unique_by=lambda s: s.identity).filter(
        lambda ss: len({s.address for s in ss}) == len(ss)
    )


@settings(max_examples=150, deadline=None)
@given(
    servers=servers_strategy(),
    dist=st.sampled_from(DETERMINISTIC),
    hash_name=st.sampled_from(routing.HASHES),
    keys=st.lists(st.binary(max_size=40), min_size=1, max_size=60),
    tag=st.sampled_from(["", "{}", "::"]),
    data=st.data(),
)
def test_native_ring_equals_reference(servers, dist, hash_name, keys, tag, data) -> None:  # type: ignore[no-untyped-def]
    live = data.draw(st.lists(st.booleans(), min_size=len(servers), max_size=len(servers)))
    overrides = {k: data.draw(st.integers(0, len(servers) - 1)) for k in keys[:3]}
    ring = routing.Ring(servers, hash=hash_name, distribution=dist, hash_tag=tag, live=live,
                        overrides=overrides)
    ref = RefRing(dist, hash_name, [s.identity for s in servers], [s.weight for s in servers],
                  live=live, hash_tag=tag.encode(), overrides=overrides)
    expected = [ref.lookup(k) for k in keys]
    assert [ring.index(k) for k in keys] == expected
    batch = [None if i == routing.NONE else i for i in ring.index_batch(keys)]
    assert batch == expected


def test_ketama_continuum_matches_reference_points() -> None:
    servers = [Server(f"198.18.0.{i}", 11211 + i, w) for i, w in enumerate([1, 3, 2, 5], 1)]
    ring = routing.Ring(servers, hash="md5")
    ref = RefRing("ketama", "md5", [s.identity for s in servers], [s.weight for s in servers])
    assert [(v, ref.ids[s]) for v, s in ref.points] == ring.points()


def test_servers_are_ordered_as_nutcracker_orders_them() -> None:
    # modula slots follow nutcracker's name order (shorter first), not the file order
    servers = [Server("198.18.0.10", 11212, 1), Server("198.18.0.9", 11212, 1)]
    ring = routing.Ring(servers, distribution="modula", hash="crc32a")
    for key in (b"a", b"b", b"c", b"d"):
        h = ring.key_hash(key)
        assert ring.index(key) == (1 if h % 2 == 0 else 0)


def test_default_port_identity_is_host_only() -> None:
    assert Server("198.18.0.1", 11211, 1).identity == b"198.18.0.1"
    assert Server("198.18.0.1", 11212, 1).identity == b"198.18.0.1:11212"
    assert Server("198.18.0.1", 11212, 1, "alpha").identity == b"alpha"
    assert Server("/run/mc.sock", 0, 1).identity == b"/run/mc.sock:"


def test_unknown_hash_and_distribution() -> None:
    servers = [Server("198.18.0.1", 11211, 1)]
    with pytest.raises(ConfigError, match="valid: one_at_a_time"):
        routing.Ring(servers, hash="sha1")
    with pytest.raises(ConfigError, match="valid: ketama"):
        routing.Ring(servers, distribution="jump")


def test_override_pins_and_falls_back_when_dead() -> None:
    servers = [Server(f"198.18.0.{i}", 11211, 1) for i in range(1, 5)]
    plain = routing.Ring(servers)
    natural = plain.index(b"blk_1073741825")
    assert natural is not None
    target = (natural + 1) % 4
    pinned = plain.with_changes(overrides={b"blk_1073741825": target})
    assert pinned.index(b"blk_1073741825") == target
    live = [True] * 4
    live[target] = False
    assert pinned.with_changes(live=live).index(b"blk_1073741825") == natural


def test_no_live_server() -> None:
    ring = routing.Ring([Server("198.18.0.1", 11211, 1)], live=[False])
    assert ring.index(b"k") is None and ring.lookup(b"k") is None
    assert list(ring.index_batch([b"k"])) == [routing.NONE]


def test_fixed_width_batch_equals_single() -> None:
    ring = routing.Ring([Server(f"198.18.0.{i}", 11211, 1) for i in range(1, 9)],
                        distribution="rendezvous")
    keys = [i.to_bytes(8, "big") for i in range(1000)]
    assert list(ring.index_fixed(b"".join(keys), 8)) == [ring.index(k) for k in keys]


def test_router_publish_is_atomic_for_readers() -> None:
    a = routing.Ring([Server("198.18.0.1", 11211, 1)])
    b = routing.Ring([Server("198.18.0.2", 11211, 1)])
    router = routing.Router(a)
    seen: set[str] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            servers = router.lookup_batch([b"x", b"y", b"z"])
            labels = {s.label for s in servers if s}
            assert len(labels) == 1  # a batch never mixes rings
            seen.update(labels)

    t = threading.Thread(target=reader)
    t.start()
    for i in range(200):
        router.publish(b if i % 2 == 0 else a)
    stop.set()
    t.join()
    assert router.generation == 200
    assert seen <= {"198.18.0.1:11211", "198.18.0.2:11211"}


def test_closed_ring_refuses_lookups() -> None:
    ring = routing.Ring([Server("198.18.0.1", 11211, 1)])
    ring.close()
    with pytest.raises(ValueError, match="closed"):
        ring.index(b"k")
