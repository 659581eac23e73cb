"""Reading a Hadoop configuration directory (core-site.xml, hdfs-site.xml).

Only what torswitch needs from a cluster's client configuration: the NameNode address
(`fs.defaultFS`), DataNode ports, checksum settings, block size. Values are looked up in
hdfs-site.xml, then core-site.xml, then Hadoop's documented defaults (DEFAULTS below, from
shared/docs/hdfs-wire-protocol.md §8). `${name}` references are expanded from other properties
as Hadoop does; Hadoop would also try Java system properties, which torswitch does not have,
so an unresolvable reference stays as written.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from torswitch.checksum import ChecksumSpec, ChecksumType
from torswitch.errors import ConfigError

#: Files read from a conf dir, lowest precedence first (later files override earlier ones).
SITE_FILES: tuple[str, ...] = ("core-site.xml", "hdfs-site.xml")
#: NameNode RPC port a client assumes when fs.defaultFS has none (3.x, HDFS-12990).
DEFAULT_NAMENODE_PORT = 8020

DEFAULTS: Mapping[str, str] = {
    "fs.defaultFS": "file:///",
    "dfs.datanode.address": "0.0.0.0:9866",
    "dfs.datanode.ipc.address": "0.0.0.0:9867",
    "dfs.datanode.http.address": "0.0.0.0:9864",
    "dfs.checksum.type": "CRC32C",
    "dfs.bytes-per-checksum": "512",
    "dfs.blocksize": "134217728",
    "dfs.replication": "3",
    "io.file.buffer.size": "4096",
    "dfs.client.socket-timeout": "60000",
    "dfs.ls.limit": "1000",
    "dfs.client.use.datanode.hostname": "false",
}

_SIZE_SUFFIX = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50, "e": 1 << 60}
_VAR = re.compile(r"\$\{([^}$\s]+)\}")
# Hadoop stops expanding after this many rounds to break reference cycles.
_MAX_SUBST = 20


@dataclass
class HadoopConf:
    """Merged properties of a Hadoop conf dir; get*() apply Hadoop's defaults and parsing."""

    properties: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # property -> file it came from

    @classmethod
    def load(cls, conf_dir: str | os.PathLike[str]) -> HadoopConf:
        """Read the site files of `conf_dir`.

        Raises ConfigError if the directory does not exist, holds none of the site files, or
        a file is not well-formed Hadoop configuration XML (the message names file and line).
        """
        root = Path(conf_dir)
        if not root.is_dir():
            raise ConfigError(f"Hadoop conf dir {root} does not exist or is not a directory")
        conf = cls()
        found = False
        for name in SITE_FILES:
            path = root / name
            if path.is_file():
                found = True
                conf.properties.update(_read_site_file(path, conf.sources))
        if not found:
            raise ConfigError(f"{root} holds none of {', '.join(SITE_FILES)}")
        return conf

    def get(self, key: str, default: str | None = None) -> str | None:
        """The expanded value of `key`, else `default`, else Hadoop's default, else None."""
        raw = self.properties.get(key)
        if raw is None:
            raw = default if default is not None else DEFAULTS.get(key)
        return None if raw is None else self._expand(raw)

    def get_int(self, key: str, default: int | None = None) -> int:
        """An integer property; raises ConfigError if absent without default or not a number."""
        value = self.get(key, None if default is None else str(default))
        if value is None:
            raise ConfigError(f"{key} is not set")
        try:
            return int(value.strip())
        except ValueError:
            raise ConfigError(f"{key}={value!r} is not an integer{self._where(key)}") from None

    def get_size(self, key: str, default: int | None = None) -> int:
        """A byte size with Hadoop's binary suffixes (k, m, g, t, p, e), e.g. "8m"."""
        value = self.get(key, None if default is None else str(default))
        if value is None:
            raise ConfigError(f"{key} is not set")
        return parse_size(value, key + self._where(key))

    def get_bool(self, key: str, default: bool = False) -> bool:
        """A boolean property ("true"/"false", any case)."""
        value = self.get(key, "true" if default else "false")
        assert value is not None
        text = value.strip().lower()
        if text not in ("true", "false"):
            raise ConfigError(f"{key}={value!r} is not true or false{self._where(key)}")
        return text == "true"

    # -- derived settings -------------------------------------------------------------------------

    def namenode_address(self) -> tuple[str, int]:
        """(host, port) of the NameNode's client RPC endpoint, from fs.defaultFS.

        Raises ConfigError unless fs.defaultFS is an hdfs:// URI naming one host (an HA
        nameservice needs dfs.ha.namenodes.* and is not supported here).
        """
        uri = self.get("fs.defaultFS") or ""
        parts = urlsplit(uri)
        if parts.scheme != "hdfs" or not parts.hostname:
            raise ConfigError(f"fs.defaultFS={uri!r} is not an hdfs://host[:port] URI")
        nameservices = (self.get("dfs.nameservices") or "").split(",")
        if parts.hostname in [n.strip() for n in nameservices if n.strip()]:
            raise ConfigError(
                f"fs.defaultFS names the HA nameservice {parts.hostname!r}; "
                "pass --namenode HOST:PORT of the active NameNode instead"
            )
        try:
            port = parts.port or DEFAULT_NAMENODE_PORT
        except ValueError:
            raise ConfigError(f"fs.defaultFS={uri!r} has an invalid port") from None
        return parts.hostname, port

    def datanode_address(self) -> tuple[str, int]:
        """(host, port) from dfs.datanode.address (the DataTransferProtocol listener)."""
        return parse_host_port(self.get("dfs.datanode.address") or "", "dfs.datanode.address")

    def checksum(self) -> ChecksumSpec:
        """The write-side checksum settings (dfs.checksum.type, dfs.bytes-per-checksum).

        Readers must use what each DataNode response declares; this is for writers and
        for a default. Raises ConfigError on an unknown type or a bad chunk size.
        """
        try:
            kind = ChecksumType.from_name(self.get("dfs.checksum.type") or "CRC32C")
        except ValueError as exc:
            where = self._where("dfs.checksum.type")
            raise ConfigError(f"dfs.checksum.type: {exc}{where}") from None
        bpc = self.get_int("dfs.bytes-per-checksum")
        try:
            return ChecksumSpec(kind, bpc)
        except ValueError as exc:
            raise ConfigError(f"dfs.bytes-per-checksum: {exc}") from None

    def block_size(self) -> int:
        """dfs.blocksize in bytes."""
        return self.get_size("dfs.blocksize")

    def socket_timeout(self) -> float:
        """dfs.client.socket-timeout in seconds."""
        return self.get_int("dfs.client.socket-timeout") / 1000.0

    # -- helpers --------------------------------------------------------------------------------

    def _where(self, key: str) -> str:
        src = self.sources.get(key)
        return f" (in {src})" if src else ""

    def _expand(self, value: str) -> str:
        for _ in range(_MAX_SUBST):
            match = _VAR.search(value)
            if match is None:
                return value
            name = match.group(1)
            repl = self.properties.get(name, DEFAULTS.get(name))
            if repl is None:
                return value  # Hadoop leaves unresolvable references as written
            value = value[: match.start()] + repl + value[match.end() :]
        return value


def parse_size(text: str, what: str = "size") -> int:
    """"8m" -> 8388608. Raises ConfigError for anything that is not a size."""
    t = text.strip().lower()
    mult = 1
    if t and t[-1] in _SIZE_SUFFIX:
        mult = _SIZE_SUFFIX[t[-1]]
        t = t[:-1]
    try:
        value = int(t) * mult
    except ValueError:
        raise ConfigError(f"{what}: {text!r} is not a size like 134217728 or 128m") from None
    if value < 0:
        raise ConfigError(f"{what}: negative size {text!r}")
    return value


def parse_host_port(
    text: str, what: str = "address", default_port: int | None = None
) -> tuple[str, int]:
    """"host:port" -> (host, port); raises ConfigError when malformed."""
    host, sep, port_s = text.strip().rpartition(":")
    if not sep:
        host, port_s = text.strip(), ""
    if not host:
        raise ConfigError(f"{what}: {text!r} is not HOST:PORT")
    if not port_s:
        if default_port is None:
            raise ConfigError(f"{what}: {text!r} has no port")
        return host, default_port
    try:
        port = int(port_s)
    except ValueError:
        raise ConfigError(f"{what}: {text!r} has an invalid port") from None
    if not 0 < port < 65536:
        raise ConfigError(f"{what}: port {port} out of range")
    return host.strip("[]"), port


def _read_site_file(path: Path, sources: dict[str, str]) -> dict[str, str]:
    """Properties of one *-site.xml; raises ConfigError naming file and line on bad XML."""
    try:
        tree = ET.parse(path)
    except ET.ParseError as exc:
        line = exc.position[0] if getattr(exc, "position", None) else "?"
        raise ConfigError(f"{path}: line {line}: not well-formed XML ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    root = tree.getroot()
    if root.tag != "configuration":
        raise ConfigError(f"{path}: root element is <{root.tag}>, expected <configuration>")
    out: dict[str, str] = {}
    for n, prop in enumerate(root.iter("property"), 1):
        name = (prop.findtext("name") or "").strip()
        if not name:
            raise ConfigError(f"{path}: property #{n} has no <name>")
        value = prop.findtext("value")
        out[name] = "" if value is None else value.strip()
        sources[name] = str(path)
    return out
