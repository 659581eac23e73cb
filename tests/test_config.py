"""torswitch.config: nutcracker pool syntax, torswitch's own file, and every error's message."""

from __future__ import annotations

import pathlib

import pytest

from torswitch import config
from torswitch.errors import ConfigError

GOOD = """\
alpha:
  listen: 127.0.0.1:22121
  hash: fnv1a_64
  hash_tag: "{}"
  distribution: ketama
  auto_eject_hosts: true
  redis: false
  timeout: 400
  server_retry_timeout: 2000
  server_failure_limit: 1
  servers:
   - 198.18.0.1:11211:1
   - 198.18.0.2:11212:2 beta
   - /run/memcached.sock:1 gamma
"""


def test_nutcracker_file_verbatim() -> None:
    cfg = config.loads(GOOD, "nutcracker.yml")
    assert cfg.is_nutcracker
    pool = cfg.pool("alpha")
    assert pool.hash_tag == "{}" and pool.auto_eject_hosts
    assert pool.server_retry_timeout_ms == 2000 and pool.timeout_ms == 400
    assert [s.label for s in pool.servers] == ["198.18.0.1:11211", "beta", "gamma"]
    assert pool.servers[1].weight == 2 and pool.servers[2].is_unix


def test_torswitch_file_with_memcached_section() -> None:
    text = "torswitch: 1\nmemcached:\n" + "".join("  " + line + "\n" for line in GOOD.splitlines())
    cfg = config.loads(text, "torswitch.yml")
    assert not cfg.is_nutcracker and cfg.pool("alpha").servers[0].port == 11211


def test_defaults_are_nutcracker_defaults() -> None:
    pool = config.loads("p:\n  servers:\n   - 198.18.0.1:11211:1\n").pool("p")
    assert (pool.hash, pool.distribution, pool.hash_tag) == ("fnv1a_64", "ketama", "")


def test_load_from_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "n.yml"
    path.write_text(GOOD)
    assert config.load(path).pool("alpha").name == "alpha"
    with pytest.raises(ConfigError, match="cannot read"):
        config.load(tmp_path / "missing.yml")


def err(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        config.loads(text, "conf.yml")
    assert isinstance(info.value, ValueError)
    return str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("p:\n  hash: fnv2\n  servers:\n   - 198.18.0.1:11211:1\n",
         "conf.yml:2: pool 'p': unknown hash 'fnv2' (valid: one_at_a_time, md5"),
        ("p:\n  distribution: jump\n  servers:\n   - 198.18.0.1:11211:1\n",
         "conf.yml:2: pool 'p': unknown distribution 'jump' (valid: ketama, modula, random, rendezvous)"),
        ("p:\n  hash: md5\n  servers: []\n", "conf.yml:3: pool 'p': 'servers' is empty"),
        ("p:\n  hash: md5\n", "conf.yml:1: pool 'p': has no 'servers' list"),
        ("p:\n  servers:\n   - 198.18.0.1:11211:1\n   - 198.18.0.1:11211:2\n",
         "conf.yml:4: pool 'p': duplicate server 198.18.0.1:11211 (also on line 3)"),
        ("p:\n  servers:\n   - 198.18.0.1:11211:1 a\n   - 198.18.0.2:11211:1 a\n",
         "conf.yml:4: pool 'p': duplicate server name 'a' (also on line 3)"),
        ("p:\n  servers:\n   - 198.18.0.1:11211:0\n", "conf.yml:3: pool 'p': server '198.18.0.1:11211:0' has a zero weight"),
        ("p:\n  servers:\n   - 198.18.0.1:11211:-2\n", "has a bad weight '-2'"),
        ("p:\n  servers:\n   - 198.18.0.1:11211:x\n", "has a bad weight 'x'"),
        ("p:\n  servers:\n   - 198.18.0.1:99999:1\n", "has a bad port '99999'"),
        ("p:\n  servers:\n   - bad_host!:11211:1\n", "has a bad address 'bad_host!'"),
        ("p:\n  servers:\n   - 198.18.0.1:11211\n", "is not \"host:port:weight [name]\""),
        ("p:\n  listen: nowhere\n  servers:\n   - 198.18.0.1:11211:1\n",
         "conf.yml:2: pool 'p': listen 'nowhere' is not \"host:port\""),
        ("p:\n  listen: 127.0.0.1:0\n  servers:\n   - 198.18.0.1:11211:1\n", "has a bad port '0'"),
        ("p:\n  colour: blue\n  servers:\n   - 198.18.0.1:11211:1\n",
         "conf.yml:2: pool 'p': unknown key 'colour' (known: auto_eject_hosts"),
        ("p:\n  hash_tag: '{'\n  servers:\n   - 198.18.0.1:11211:1\n", "must be exactly two characters"),
        ("p:\n  redis: maybe\n  servers:\n   - 198.18.0.1:11211:1\n", "'redis' must be true or false"),
        ("p:\n  timeout: soon\n  servers:\n   - 198.18.0.1:11211:1\n", "'timeout' must be a non-negative integer"),
        ("p:\n  hash: md5\n  hash: crc16\n  servers:\n   - 198.18.0.1:11211:1\n", "conf.yml:3: pool 'p': a pool: 'hash' is a duplicate"),
        ("p: [1, 2\n", "not valid YAML"),
        ("", "empty configuration"),
        ("torswitch: 1\nextras: {}\n", "conf.yml:2: unknown section 'extras'"),
        ("torswitch: 7\n", "unsupported config version '7'"),
        ("a:\n  listen: 127.0.0.1:1\n  servers: ['198.18.0.1:11211:1']\nb:\n  listen: 127.0.0.1:1\n  servers: ['198.18.0.1:11211:1']\n",
         "pools 'a' and 'b' have the same listen address"),
    ],
)
def test_errors_name_file_line_and_pool(text: str, expected: str) -> None:
    assert expected in err(text)


def test_unknown_pool_lists_pools() -> None:
    with pytest.raises(ConfigError, match="no pool named 'zeta' \\(pools: alpha\\)"):
        config.loads(GOOD, "n.yml").pool("zeta")


def test_tsw_cache_is_a_pool_bool() -> None:
    pool = config.loads("p:\n  listen: 198.18.70.100:11211\n  tsw_cache: false\n"
                 "  servers:\n    - 198.18.70.21:11211:1\n").pool("p")
    assert pool.extra["tsw_cache"] is False
