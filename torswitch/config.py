"""torswitch's configuration: typed objects, read and validated once.

A torswitch config is a YAML mapping with a format marker and sections:

    torswitch: 1              # format version (required: it is how the file is recognised)
    memcached:                # a nutcracker.yml, verbatim: pool name -> pool
      alpha:
        listen: 127.0.0.1:22121
        hash: fnv1a_64
        distribution: ketama
        servers:
          - 127.0.0.1:11211:1 server1

A file without the `torswitch:` marker is read as a nutcracker.yml as it is, so an operator
can hand over the file their TwemProxy runs on. Pool syntax and defaults follow nutcracker
0.5 (hash fnv1a_64, distribution ketama); torswitch adds the hash crc32c and the distribution
rendezvous. Every error names the file, the line and the pool.
"""

from __future__ import annotations

import ipaddress
import pathlib
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from torswitch.errors import ConfigError

CONFIG_VERSION = 1

HASHES: tuple[str, ...] = (
    "one_at_a_time", "md5", "crc16", "crc32", "crc32a", "fnv1_64", "fnv1a_64", "fnv1_32",
    "fnv1a_32", "hsieh", "murmur", "jenkins", "crc32c",
)
DISTRIBUTIONS: tuple[str, ...] = ("ketama", "modula", "random", "rendezvous")

# nutcracker's libmemcached-compatible rule: a server on the default port is known on the
# ketama ring by its host alone (nc_conf.c, CONF_DEFAULT_KETAMA_PORT).
KETAMA_DEFAULT_PORT = 11211

# Pool directives nutcracker 0.5 accepts, by value type.
_POOL_NUMBERS = frozenset({
    "timeout", "backlog", "client_connections", "redis_db", "server_connections",
    "server_retry_timeout", "server_failure_limit",
})
# tsw_cache is torswitch's own (MemSwitch's in-switch cache on or off for the pool); nutcracker
# refuses it, so files shared with a nutcracker leave it out.
_POOL_BOOLS = frozenset({"redis", "preconnect", "auto_eject_hosts", "tsw_cache"})
_POOL_STRINGS = frozenset({"listen", "hash", "hash_tag", "distribution", "redis_auth"})
POOL_KEYS = _POOL_NUMBERS | _POOL_BOOLS | _POOL_STRINGS | {"servers"}

# Top-level sections of a torswitch config; later subsystems add theirs here.
SECTIONS: frozenset[str] = frozenset({"torswitch", "memcached", "engine", "directory"})

_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


@dataclass(frozen=True)
class Server:
    """One pool member, as `host:port:weight [name]` or `/unix/path:weight [name]`."""

    host: str
    port: int  # 0 for a unix socket
    weight: int
    name: str | None = None

    @property
    def is_unix(self) -> bool:
        return self.host.startswith("/")

    @property
    def address(self) -> str:
        return self.host if self.is_unix else f"{self.host}:{self.port}"

    @property
    def label(self) -> str:
        """What users see: the server's name if it has one, else host:port."""
        return self.name if self.name is not None else self.address

    @property
    def identity(self) -> bytes:
        """The string that places this server on the ketama ring, exactly as nutcracker.

        The name if given; else the host alone on port 11211, else "host:port". A unix socket
        without a name is "path:" (nutcracker keeps the separator; reproduced on purpose).
        """
        if self.name is not None:
            return self.name.encode()
        if self.is_unix:
            return (self.host + ":").encode()
        if self.port == KETAMA_DEFAULT_PORT:
            return self.host.encode()
        return f"{self.host}:{self.port}".encode()


@dataclass(frozen=True)
class Pool:
    name: str
    servers: tuple[Server, ...]
    hash: str = "fnv1a_64"
    distribution: str = "ketama"
    hash_tag: str = ""
    listen: str | None = None
    auto_eject_hosts: bool = False
    server_retry_timeout_ms: int = 30000
    server_failure_limit: int = 2
    timeout_ms: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # accepted, not used by routing


@dataclass(frozen=True)
class EngineConfig:
    """The `engine:` section: the ToR block engine (torswitch.engine).

    listen: where intercepted HDFS connections arrive (the interception redirects DataNode
    transfer ports here). cache_path: LMDB directory, on tmpfs (RAM) by default, an NVMe path by
    choice. block_tokens: "auto" serves a hit to a client presenting a block token only after
    the DataNode accepted that token; "off" is the operator's explicit opt-out.
    """

    listen_host: str = "0.0.0.0"
    listen_port: int = 19866
    cache_path: str = "/dev/shm/torswitch-blockcache"
    cache_capacity_bytes: int = 1 << 30
    segment_bytes: int = 64 * 1024
    block_tokens: str = "auto"
    hadoop_conf_dir: str | None = None
    metrics_port: int | None = None
    agent_port: int | None = None
    upstream_timeout_s: float = 30.0
    prefetch_concurrency: int = 4
    prefetch_rate_bytes_per_s: int | None = None
    # Block directory this ToR registers with and reports to (torswitch.directory); needs
    # agent_port. switch_id defaults to the host name; rack_hosts lists the hosts behind it.
    directory: str | None = None
    rack: str | None = None
    switch_id: str | None = None
    agent_address: str | None = None
    rack_hosts: tuple[str, ...] = ()


ENGINE_KEYS: dict[str, type] = {
    "listen": str, "cache_path": str, "cache_capacity": str, "segment_bytes": int,
    "block_tokens": str, "hadoop_conf_dir": str, "metrics_port": int, "agent_port": int,
    "upstream_timeout_s": float, "prefetch_concurrency": int, "prefetch_rate": str,
    "directory": str, "rack": str, "switch_id": str, "agent_address": str, "rack_hosts": str,
}


@dataclass(frozen=True)
class DirectoryConfig:
    """The `directory:` section: the block directory service (torswitch.directory).

    listen: where the gRPC service listens. hadoop_conf_dir: the cluster's configuration, for
    resolving hinted paths through the NameNode (without it, hints must name blocks).
    """

    listen: str = "0.0.0.0:19870"
    hadoop_conf_dir: str | None = None
    heartbeat_interval_s: float = 3.0
    plan_retention_s: float = 600.0


DIRECTORY_KEYS: dict[str, type] = {
    "listen": str, "hadoop_conf_dir": str, "heartbeat_interval_s": float,
    "plan_retention_s": float,
}


@dataclass(frozen=True)
class Config:
    path: str
    pools: dict[str, Pool]
    is_nutcracker: bool
    engine: EngineConfig = field(default_factory=EngineConfig)
    directory: DirectoryConfig = field(default_factory=DirectoryConfig)

    def pool(self, name: str) -> Pool:
        try:
            return self.pools[name]
        except KeyError:
            raise ConfigError(
                f"{self.path}: no pool named {name!r} (pools: {', '.join(self.pools) or 'none'})"
            ) from None


# ---- loading ------------------------------------------------------------------------------------


class _Where:
    """Formats error locations: file:line: pool 'x': ..."""

    def __init__(self, path: str) -> None:
        self.path = path

    def error(self, node: yaml.Node | None, msg: str, pool: str | None = None) -> ConfigError:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        where = f" pool {pool!r}:" if pool else ""
        return ConfigError(f"{self.path}{line}:{where} {msg}")


def _mapping_items(where: _Where, node: yaml.Node, what: str, pool: str | None = None) -> list[tuple[str, yaml.Node, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        raise where.error(node, f"{what} must be a mapping", pool)
    seen: dict[str, yaml.Node] = {}
    out: list[tuple[str, yaml.Node, yaml.Node]] = []
    for knode, vnode in node.value:
        if not isinstance(knode, yaml.ScalarNode):
            raise where.error(knode, f"{what}: keys must be plain strings", pool)
        key = str(knode.value)
        if key in seen:
            raise where.error(knode, f"{what}: {key!r} is a duplicate (first on line {seen[key].start_mark.line + 1})", pool)
        seen[key] = knode
        out.append((key, knode, vnode))
    return out


def load(path: str | pathlib.Path) -> Config:
    """Read a torswitch config or a nutcracker.yml. Raises ConfigError (a ValueError)."""
    p = pathlib.Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from exc
    return loads(text, str(p))


def loads(text: str, path: str = "<string>") -> Config:
    where = _Where(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if root is None:
        raise ConfigError(f"{path}: empty configuration")
    items = _mapping_items(where, root, "the top level")
    keys = {k for k, _, _ in items}
    if "torswitch" in keys:
        for key, knode, vnode in items:
            if key not in SECTIONS:
                raise where.error(knode, f"unknown section {key!r} (known: {', '.join(sorted(SECTIONS))})")
            if key == "torswitch" and not (
                isinstance(vnode, yaml.ScalarNode) and vnode.value == str(CONFIG_VERSION)
            ):
                raise where.error(vnode, f"unsupported config version {vnode.value!r} (this torswitch reads {CONFIG_VERSION})")
        pools_node = next((v for k, _, v in items if k == "memcached"), None)
        pools = _load_pools(where, pools_node) if pools_node is not None else {}
        engine_node = next((v for k, _, v in items if k == "engine"), None)
        engine = _load_engine(where, engine_node) if engine_node is not None else EngineConfig()
        directory_node = next((v for k, _, v in items if k == "directory"), None)
        directory = (_load_directory(where, directory_node) if directory_node is not None
                     else DirectoryConfig())
        return Config(path, pools, is_nutcracker=False, engine=engine, directory=directory)
    return Config(path, _load_pools(where, root), is_nutcracker=True)


def _load_pools(where: _Where, node: yaml.Node) -> dict[str, Pool]:
    pools: dict[str, Pool] = {}
    items = _mapping_items(where, node, "the pools section")
    if not items:
        raise where.error(node, "no pools defined")
    for name, knode, vnode in items:
        pools[name] = _load_pool(where, name, knode, vnode)
    listens: dict[str, str] = {}
    for pool in pools.values():
        if pool.listen is not None:
            other = listens.setdefault(pool.listen, pool.name)
            if other != pool.name:
                raise where.error(None, f"pools {other!r} and {pool.name!r} have the same listen address {pool.listen!r}")
    return pools


def _scalar(where: _Where, node: yaml.Node, key: str, pool: str) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise where.error(node, f"{key!r} must be a single value", pool)
    return str(node.value)


def _load_pool(where: _Where, name: str, knode: yaml.Node, node: yaml.Node) -> Pool:
    kw: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    servers_node: yaml.Node | None = None
    for key, kn, vn in _mapping_items(where, node, "a pool", name):
        if key not in POOL_KEYS:
            raise where.error(kn, f"unknown key {key!r} (known: {', '.join(sorted(POOL_KEYS))})", name)
        if key == "servers":
            servers_node = vn
            continue
        value = _scalar(where, vn, key, name)
        if key == "hash":
            if value not in HASHES:
                raise where.error(vn, f"unknown hash {value!r} (valid: {', '.join(HASHES)})", name)
            kw["hash"] = value
        elif key == "distribution":
            if value not in DISTRIBUTIONS:
                raise where.error(vn, f"unknown distribution {value!r} (valid: {', '.join(DISTRIBUTIONS)})", name)
            kw["distribution"] = value
        elif key == "hash_tag":
            if len(value) != 2:
                raise where.error(vn, f"hash_tag {value!r} must be exactly two characters, like \"{{}}\"", name)
            kw["hash_tag"] = value
        elif key == "listen":
            kw["listen"] = _parse_listen(where, vn, value, name)
        elif key in _POOL_BOOLS:
            if value not in ("true", "false"):
                raise where.error(vn, f"{key!r} must be true or false, not {value!r}", name)
            if key == "auto_eject_hosts":
                kw[key] = value == "true"
            else:
                extra[key] = value == "true"
        elif key in _POOL_NUMBERS:
            if not value.isdigit():
                raise where.error(vn, f"{key!r} must be a non-negative integer, not {value!r}", name)
            if key == "server_retry_timeout":
                kw["server_retry_timeout_ms"] = int(value)
            elif key == "server_failure_limit":
                kw["server_failure_limit"] = int(value)
            elif key == "timeout":
                kw["timeout_ms"] = int(value)
            else:
                extra[key] = int(value)
        else:
            extra[key] = value
    if servers_node is None:
        raise where.error(knode, "has no 'servers' list", name)
    if not isinstance(servers_node, yaml.SequenceNode):
        raise where.error(servers_node, "'servers' must be a list of \"host:port:weight [name]\"", name)
    if not servers_node.value:
        raise where.error(servers_node, "'servers' is empty", name)
    servers = []
    seen_addr: dict[str, int] = {}
    seen_name: dict[bytes, int] = {}
    for snode in servers_node.value:
        if not isinstance(snode, yaml.ScalarNode):
            raise where.error(snode, "each server must be a string \"host:port:weight [name]\"", name)
        server = parse_server(str(snode.value), lambda msg, n=snode: where.error(n, msg, name))
        line = snode.start_mark.line + 1
        if server.address in seen_addr:
            raise where.error(snode, f"duplicate server {server.address} (also on line {seen_addr[server.address]})", name)
        if server.identity in seen_name:
            raise where.error(snode, f"duplicate server name {server.identity.decode()!r} (also on line {seen_name[server.identity]})", name)
        seen_addr[server.address] = line
        seen_name[server.identity] = line
        servers.append(server)
    return Pool(name=name, servers=tuple(servers), extra=extra, **kw)


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return bool(_HOSTNAME.match(host))


def _parse_listen(where: _Where, node: yaml.Node, value: str, pool: str) -> str:
    if value.startswith("/"):
        return value
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise where.error(node, f"listen {value!r} is not \"host:port\" or a unix socket path", pool)
    if not _valid_host(host):
        raise where.error(node, f"listen {value!r} has a bad host {host!r}", pool)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise where.error(node, f"listen {value!r} has a bad port {port!r}", pool)
    return value


def parse_server(text: str, error: Any = None) -> Server:
    """Parse "host:port:weight [name]" or "/path:weight [name]" the way nutcracker does.

    `error(msg)` builds the exception to raise; by default a plain ConfigError.
    """
    err = error or (lambda msg: ConfigError(msg))
    stripped = text.strip()
    name: str | None = None
    spec = stripped
    if " " in stripped:
        # nutcracker takes the name after the last space
        spec, _, name = stripped.rpartition(" ")
        spec = spec.strip()
    unix = spec.startswith("/")
    parts = spec.rsplit(":", 1 if unix else 2)
    if len(parts) != (2 if unix else 3):
        raise err(f"server {text!r} is not \"host:port:weight [name]\" or \"/path:weight [name]\"")
    if unix:
        host, weight_s = parts
        port = 0
    else:
        host, port_s, weight_s = parts
        if not host or not _valid_host(host):
            raise err(f"server {text!r} has a bad address {host!r}")
        if not port_s.isdigit() or not 0 < int(port_s) < 65536:
            raise err(f"server {text!r} has a bad port {port_s!r} (1-65535)")
        port = int(port_s)
    if not weight_s.isdigit():
        raise err(f"server {text!r} has a bad weight {weight_s!r} (a positive integer)")
    weight = int(weight_s)
    if weight == 0:
        raise err(f"server {text!r} has a zero weight (weights are positive integers)")
    if weight > 1_000_000:
        raise err(f"server {text!r} has weight {weight}, above the limit of 1000000")
    return Server(host=host, port=port, weight=weight, name=name)


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes from "512MiB", "2GiB", "1.5G", "4096" (binary multiples). Raises ValueError."""
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a size like 512MiB or 2GiB")
    unit = (m[2] or "B").upper().rstrip("B").rstrip("I")
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[unit]
    return int(float(m[1]) * scale)


def _load_engine(where: _Where, node: yaml.Node) -> EngineConfig:
    values: dict[str, Any] = {}
    for key, kn, vn in _mapping_items(where, node, "the engine section"):
        if key not in ENGINE_KEYS:
            raise where.error(kn, f"engine: unknown key {key!r} (known: {', '.join(sorted(ENGINE_KEYS))})")
        raw = _scalar(where, vn, key, "engine")
        try:
            if key == "listen":
                host, _, port = raw.rpartition(":")
                if not host or not port.isdigit() or not 0 < int(port) < 65536:
                    raise ValueError(f"listen {raw!r} is not host:port")
                values["listen_host"], values["listen_port"] = host, int(port)
            elif key == "cache_capacity":
                values["cache_capacity_bytes"] = parse_size(raw)
            elif key == "prefetch_rate":
                values["prefetch_rate_bytes_per_s"] = parse_size(raw)
            elif key == "rack_hosts":
                values[key] = tuple(h.strip() for h in raw.split(",") if h.strip())
            elif key in ("directory", "agent_address"):
                host, _, port = raw.rpartition(":")
                if not host or not port.isdigit() or not 0 < int(port) < 65536:
                    raise ValueError(f"{raw!r} is not host:port")
                values[key] = raw
            elif key == "rack":
                if not raw.startswith("/"):
                    raise ValueError(f"{raw!r} is not a topology path like /rack-a")
                values[key] = raw
            elif key == "block_tokens":
                if raw not in ("auto", "off"):
                    raise ValueError(f"block_tokens must be auto or off, not {raw!r}")
                values[key] = raw
            else:
                values[key] = ENGINE_KEYS[key](raw)
        except ValueError as exc:
            raise where.error(vn, f"engine: {key}: {exc}") from None
    if values.get("segment_bytes", 512) % 512 or values.get("segment_bytes", 512) <= 0:
        raise where.error(node, "engine: segment_bytes must be a positive multiple of 512")
    if values.get("directory") and not (values.get("agent_port") and values.get("rack")):
        raise where.error(node, "engine: directory needs agent_port and rack")
    return EngineConfig(**values)


def _load_directory(where: _Where, node: yaml.Node) -> DirectoryConfig:
    values: dict[str, Any] = {}
    for key, kn, vn in _mapping_items(where, node, "the directory section"):
        if key not in DIRECTORY_KEYS:
            raise where.error(kn, f"directory: unknown key {key!r} (known: {', '.join(sorted(DIRECTORY_KEYS))})")
        raw = _scalar(where, vn, key, "directory")
        try:
            if key == "listen":
                host, _, port = raw.rpartition(":")
                if not host or not port.isdigit() or not 0 <= int(port) < 65536:
                    raise ValueError(f"listen {raw!r} is not host:port")
                values[key] = raw
            else:
                values[key] = DIRECTORY_KEYS[key](raw)
                if key.endswith("_s") and values[key] <= 0:
                    raise ValueError("must be > 0")
        except ValueError as exc:
            raise where.error(vn, f"directory: {key}: {exc}") from None
    return DirectoryConfig(**values)
