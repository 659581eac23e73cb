"""Rendering of the Hadoop configuration templates in hadoop-conf/ into per-process conf dirs.

The templates hold every setting and the comment saying why; this module only fills in the
``@NAME@`` placeholders (addresses, directories, sizes) and refuses to write a file with a
placeholder left over or XML that no longer parses. Files without placeholders (logging,
metrics) are copied as they are.

Also here: the JVM hosts file each host gets. The JVMs are started with
``-Djdk.net.hosts.file`` pointing at it, so name lookups inside a namespace never depend on the
machine's /etc/hosts, and the machine's host name resolves to the host's own testbed address
(Hadoop calls InetAddress.getLocalHost() in several places).
"""

from __future__ import annotations

import re
import shutil
import socket
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from torswitch.errors import ConfigError
from torswitch.testbed.topology import Host, Topology

TEMPLATES = ("core-site.xml", "hdfs-site.xml")
STATIC_FILES = ("log4j.properties", "hadoop-metrics2.properties")
TOPOLOGY_TEMPLATE = "topology.table"
NN_RPC_PORT = 8020
NN_HTTP_PORT = 9870
DN_XFER_PORT = 9866
DN_HTTP_PORT = 9864
# Hadoop's rule: a block size is a multiple of dfs.bytes-per-checksum (512) and at least
# dfs.namenode.fs-limits.min-block-size (1 MiB).
MIN_BLOCK_SIZE = 1 << 20
CHECKSUM_CHUNK = 512

_PLACEHOLDER = re.compile(r"@([A-Z][A-Z0-9_]*)@")


@dataclass(frozen=True)
class ClusterSettings:
    """Cluster-wide values: `block_size` in bytes, `replication` copies per block,
    `block_tokens`: whether DataNodes demand block access tokens (dfs.block.access.token.enable)."""

    block_size: int = 8 << 20
    replication: int = 1
    block_tokens: bool = False

    def validate(self, datanodes: int) -> None:
        """Raise `ConfigError` if HDFS would refuse these values for `datanodes` DataNodes."""
        if self.block_size < MIN_BLOCK_SIZE or self.block_size % CHECKSUM_CHUNK:
            raise ConfigError(
                f"block size {self.block_size} B: must be at least 1 MiB and a multiple of "
                f"{CHECKSUM_CHUNK} B"
            )
        if not 1 <= self.replication <= datanodes:
            raise ConfigError(
                f"replication {self.replication}: must be between 1 and the number of "
                f"DataNodes ({datanodes})"
            )


def render_text(template: str, values: Mapping[str, str], source: str) -> str:
    """Fill ``@NAME@`` placeholders in `template` from `values`.

    `source` names the template in errors. Raises `ConfigError` if the template uses a name
    that `values` lacks.
    """
    missing = sorted({m for m in _PLACEHOLDER.findall(template) if m not in values})
    if missing:
        raise ConfigError(f"{source}: no value for placeholder(s) {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda m: values[m[1]], template)


def topology_entries(topo: Topology) -> str:
    """The rack table body: one ``<ip> <rack>`` line per host that Hadoop sees."""
    return "\n".join(f"{h.address} {h.rack}" for h in topo.hosts if h.rack and h.address)


def process_values(
    topo: Topology,
    settings: ClusterSettings,
    *,
    process: str,
    host: Host,
    conf_root: Path,
    data_root: Path,
) -> dict[str, str]:
    """Placeholder values for one JVM: `process` names its conf and data dirs, `host` is
    where it runs. Directories are absolute paths under `data_root` / `conf_root`."""
    nn = topo.by_role("namenode")[0]
    own = data_root / process
    return {
        "NN_ADDRESS": str(nn.address),
        "NN_RPC_PORT": str(NN_RPC_PORT),
        "NN_HTTP_PORT": str(NN_HTTP_PORT),
        "TMP_DIR": str(own / "tmp"),
        "TOPOLOGY_FILE": str(conf_root / nn.name / TOPOLOGY_TEMPLATE),
        "NAME_DIR": str(data_root / nn.name / "name"),
        "DATA_DIR": str(own / "blocks"),
        "HOST_NAME": host.name,
        "BLOCK_SIZE": str(settings.block_size),
        "REPLICATION": str(settings.replication),
        "BLOCK_TOKENS": "true" if settings.block_tokens else "false",
        "MIN_DATANODES": str(len(topo.by_role("datanode"))),
        "TOPOLOGY_ENTRIES": topology_entries(topo),
    }


def write_conf_dir(template_dir: Path, out: Path, values: Mapping[str, str]) -> None:
    """Render every template of `template_dir` into directory `out` (created).

    Raises `ConfigError` if a template is missing, a placeholder is unfilled, or a rendered
    XML file does not parse.
    """
    out.mkdir(parents=True, exist_ok=True)
    for name in (*TEMPLATES, TOPOLOGY_TEMPLATE):
        src = template_dir / name
        try:
            text = src.read_text()
        except FileNotFoundError:
            raise ConfigError(f"missing configuration template {src}") from None
        rendered = render_text(text, values, str(src))
        if name.endswith(".xml"):
            try:
                ET.fromstring(rendered)
            except ET.ParseError as exc:
                raise ConfigError(f"{src}: rendered XML does not parse: {exc}") from exc
        (out / name).write_text(rendered)
    for name in STATIC_FILES:
        src = template_dir / name
        if not src.is_file():
            raise ConfigError(f"missing configuration file {src}")
        shutil.copyfile(src, out / name)


def read_properties(conf_file: Path) -> dict[str, str]:
    """Name -> value of a Hadoop *-site.xml file. Raises `ConfigError` if it does not parse."""
    try:
        root = ET.parse(conf_file).getroot()
    except (OSError, ET.ParseError) as exc:
        raise ConfigError(f"{conf_file}: {exc}") from exc
    props: dict[str, str] = {}
    for prop in root.iter("property"):
        name, value = prop.findtext("name"), prop.findtext("value")
        if name is not None:
            props[name.strip()] = (value or "").strip()
    return props


def hosts_file_text(topo: Topology, host: Host) -> str:
    """The JVM hosts file for `host`: localhost, the machine's own name as this host's
    address, and every testbed host by name."""
    own = host.address or "127.0.0.1"
    lines = ["127.0.0.1 localhost", f"{own} {socket.gethostname()}"]
    lines += [f"{h.address} {h.name}" for h in topo.hosts if h.address]
    return "\n".join(lines) + "\n"
