"""torswitch places keys exactly where a real nutcracker (Debian's TwemProxy) does.

For each pool config: four real memcached servers, a real nutcracker in front of them, 5,000
random keys set through nutcracker, then every server asked directly which keys it holds. The
ring of torswitch.routing (and the `torswitch route` command) must name the same server for
100% of the keys. Keys include bytes >= 0x80, which several TwemProxy hashes read as signed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from collections.abc import Iterator

import pytest

from torswitch import config, peers, routing

NKEYS = 5000

# (id, distribution, hash, weights, names, hash_tag)
POOLS = [
    ("ketama-fnv1a_64", "ketama", "fnv1a_64", [1, 1, 1, 1], None, None),
    ("ketama-md5", "ketama", "md5", [1, 1, 1, 1], None, None),
    ("ketama-murmur", "ketama", "murmur", [1, 1, 1, 1], None, None),
    ("ketama-weights-names", "ketama", "fnv1a_64", [1, 3, 2, 5], ["red", "green", "blu", "violet1"], None),
    ("modula-crc32a", "modula", "crc32a", [1, 1, 1, 1], None, None),
    ("modula-fnv1a_64", "modula", "fnv1a_64", [1, 1, 1, 1], None, None),
    ("modula-weights", "modula", "hsieh", [2, 1, 3, 1], None, None),
    ("ketama-hash_tag", "ketama", "md5", [1, 1, 1, 1], None, "{}"),
    ("modula-hash_tag", "modula", "crc32", [1, 2, 1, 1], None, "::"),
]
# Every other hash, on both deterministic distributions, with fewer keys.
POOLS += [
    (f"{dist}-{h}", dist, h, [1, 2, 1, 1], None, None)
    for h in ("one_at_a_time", "crc16", "crc32", "fnv1_64", "fnv1_32", "fnv1a_32", "hsieh",
              "jenkins")
    for dist in ("ketama", "modula")
]


@pytest.fixture(scope="module")
def servers() -> Iterator[list[peers.Memcached]]:
    with peers.memcached_servers([("127.0.0.1", None)] * 4) as started:
        yield started


@pytest.fixture(scope="module")
def default_port_servers() -> Iterator[list[peers.Memcached]]:
    # Port 11211 on distinct loopback addresses: nutcracker then names servers by host alone.
    with peers.memcached_servers([(f"127.0.0.{i}", 11211) for i in range(2, 5)]) as started:
        yield started


def pool_yaml(name: str, listen: tuple[str, int], dist: str, hash_name: str,
              servers: list[peers.Memcached], weights: list[int], names: list[str] | None,
              hash_tag: str | None) -> str:
    lines = [f"{name}:", f"  listen: {listen[0]}:{listen[1]}", f"  hash: {hash_name}",
             f"  distribution: {dist}"]
    if hash_tag:
        lines.append(f'  hash_tag: "{hash_tag}"')
    lines.append("  servers:")
    for i, (s, w) in enumerate(zip(servers, weights, strict=True)):
        lines.append(f"   - {s.address}:{w}" + (f" {names[i]}" if names else ""))
    return "\n".join(lines) + "\n"


def keys_for(tag: str | None, n: int, seed: int) -> list[bytes]:
    keys = peers.random_keys(n, seed)
    if tag:
        # a third of the keys share a handful of tags, so tagged keys must co-locate
        o, c = tag.encode()[:1], tag.encode()[1:]
        keys = [k if i % 3 else b"obj" + o + b"%d" % (i % 7) + c + k for i, k in enumerate(keys)]
        keys = sorted({k[:250] for k in keys})
    return keys


def observe(servers: list[peers.Memcached], yml: str, listen: tuple[str, int],
            keys: list[bytes]) -> dict[bytes, list[int]]:
    for s in servers:
        with peers.TextClient(s.host, s.port) as c:
            c.flush_all()
    nc = peers.start_nutcracker(yml, listen)
    try:
        with peers.TextClient(*listen) as c:
            c.set_many((k, b"x") for k in keys)
    finally:
        nc.stop()
    return peers.where_keys_live(servers, keys)


@pytest.mark.parametrize(("pid", "dist", "hash_name", "weights", "names", "tag"), POOLS,
                         ids=[p[0] for p in POOLS])
def test_placement_equals_nutcracker(servers, pid, dist, hash_name, weights, names, tag) -> None:  # type: ignore[no-untyped-def]
    n = NKEYS if pid in {p[0] for p in POOLS[:9]} else 1500
    keys = keys_for(tag, n, seed=zlib.crc32(pid.encode()))
    listen = ("127.0.0.1", peers.free_port())
    yml = pool_yaml("pool", listen, dist, hash_name, servers, weights, names, tag)
    held = observe(servers, yml, listen, keys)
    assert all(len(v) == 1 for v in held.values()), "every key stored exactly once"
    pool = config.loads(yml, f"{pid}.yml").pool("pool")
    predicted = routing.Ring.from_pool(pool).index_batch(keys)
    wrong = [k for k, p in zip(keys, predicted, strict=True) if held[k] != [p]]
    assert not wrong, f"{len(wrong)}/{len(keys)} keys placed differently, e.g. {wrong[:3]}"
    if tag:
        ring = routing.Ring.from_pool(pool)
        tagged = [k for k in keys if tag[0].encode() in k]
        assert len(tagged) > 100 and len({ring.key_hash(k) for k in tagged}) < len(tagged)


def test_default_port_servers_are_named_by_host(default_port_servers) -> None:  # type: ignore[no-untyped-def]
    keys = keys_for(None, 3000, seed=11211)
    listen = ("127.0.0.1", peers.free_port())
    yml = pool_yaml("pool", listen, "ketama", "md5", default_port_servers, [1, 1, 2], None, None)
    held = observe(default_port_servers, yml, listen, keys)
    pool = config.loads(yml).pool("pool")
    assert pool.servers[0].identity == b"127.0.0.2"
    predicted = routing.Ring.from_pool(pool).index_batch(keys)
    assert all(held[k] == [p] for k, p in zip(keys, predicted, strict=True))


def test_route_command_agrees_with_nutcracker(servers, tmp_path) -> None:  # type: ignore[no-untyped-def]
    keys = [k for k in keys_for(None, 400, seed=5) if max(k) < 0x80]
    listen = ("127.0.0.1", peers.free_port())
    yml = pool_yaml("alpha", listen, "ketama", "fnv1a_64", servers, [1, 2, 1, 1],
                    ["one", "two", "three", "four"], None)
    held = observe(servers, yml, listen, keys)
    path = tmp_path / "nutcracker.yml"
    path.write_text(yml)
    out = subprocess.run(
        [sys.executable, "-m", "torswitch", "route", "--config", str(path), "--pool", "alpha",
         "--json", "--", *[k.decode() for k in keys]],
        capture_output=True, text=True, check=True,
    )
    answers = json.loads(out.stdout)
    labels = ["one", "two", "three", "four"]
    assert [a["key"] for a in answers] == [k.decode() for k in keys]
    assert all(a["server"] == labels[held[k][0]] for a, k in zip(answers, keys, strict=True))
