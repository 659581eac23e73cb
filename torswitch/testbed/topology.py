"""The emulated racks: one network namespace per host, veth pairs, bridges and the shaped uplink.

::

      rack A (/rack-a)                 ToR                      core / rack B (/rack-b)
    +------+                  +----------------------+        +------------------------+
    |  c1  |eth0 ------- c1   |                      |        |  br0 (L2 only)         |
    +------+                  |  br0  198.18.1.1     | uplink |   |-- nn  --- eth0 [nn] |
    +------+                  |  (kernel mode)       |--------|-tor-a                  |
    |  c2  |eth0 ------- c2   |                      |  tc    |   |-- dn1 --- eth0 [dn1]|
    +------+                  +----------------------+ shaped |   |-- dnN --- eth0 [dnN]|
                                      tor-a                   +------------------------+
                                                                        core

Every box is a namespace named ``<instance>-<host>``, the core bridge included, so nothing is
created in the host's own namespace and several instances can exist side by side. Veth pairs
are created with both ends directly in their namespaces (``ip -n A link add .. peer .. netns
B``), so the host's interface names are never used, not even for a moment.

All hosts share one L2 segment, 198.18.0.0/16 (from the 198.18.0.0/15 benchmarking range of
RFC 2544), as a real rack design with a stretched VLAN would: rack A addresses are 198.18.1.x,
rack B addresses 198.18.2.x. Traffic between c1 and a DataNode crosses the ToR's bridge and the
uplink.

The ToR namespace keeps its ports separate (one per rack host, plus ``uplink``); how they are
joined is the ToR mode. The kernel mode bridges them; the block engine's nftables interception
goes on top of that bridge (testbed.tor). The DPDK mode leaves the ports unbridged and
without addresses for the data plane to own; its tap port holds the ToR's address
(testbed.tor starts it).

The uplink is shaped on both of its ends, so reads (core to rack A) and writes (rack A to core)
both see the oversubscribed link: with netem (rate and one-way delay) where the kernel has it,
else with tbf (rate only; the delay is then not emulated and `up` says so).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from torswitch.testbed import netns
from torswitch.testbed.errors import BadValue, StartupFailed
from torswitch.testbed.units import format_delay, format_rate

SEGMENT_PREFIX_LEN = 16
TOR_ADDRESS = "198.18.1.1"
RACK_A = "/rack-a"
RACK_B = "/rack-b"
TOR = "tor-a"
CORE = "core"
UPLINK_TOR_PORT = "uplink"  # the uplink's end in the ToR namespace
UPLINK_CORE_PORT = TOR  # its end in the core namespace, named after the ToR it leads to
HOST_PORT = "eth0"  # every host's single interface
BRIDGE = "br0"
MAX_DATANODES = 32
DEFAULT_CLIENTS = 2

# Instance names prefix namespace names; /run/netns entries and our own prefix parsing want
# them short and plain.
_INSTANCE_RE = re.compile(r"[a-z][a-z0-9]{0,9}")
# netem's default queue of 1000 packets is too short for a 1 Gbit/s uplink with bursts of
# 64 KiB GSO segments from several DataNodes; drops would then measure the queue, not the rate.
_NETEM_LIMIT_PACKETS = 10000


@dataclass(frozen=True)
class Host:
    """One namespace of the testbed.

    `role` is one of client, tor, core, namenode, datanode. `address` is the IPv4 address on
    the shared segment (None for the core, which is pure L2). `rack` is the Hadoop rack path
    (None for tor and core, which Hadoop never sees).
    """

    name: str
    role: str
    namespace: str
    address: str | None
    rack: str | None


@dataclass(frozen=True)
class Link:
    """A veth pair, `a_dev` in host `a`'s namespace and `b_dev` in host `b`'s."""

    a: str
    a_dev: str
    b: str
    b_dev: str


@dataclass(frozen=True)
class Shaping:
    """Uplink shaping: `rate_bps` in bits per second, `delay_ms` one-way, in milliseconds."""

    rate_bps: int
    delay_ms: float


@dataclass(frozen=True)
class Topology:
    """The whole plan: hosts and links of one instance. Pure data; `build_commands` applies it."""

    instance: str
    hosts: tuple[Host, ...]
    links: tuple[Link, ...]

    def host(self, name: str) -> Host:
        """The host called `name`; raises `BadValue` listing the valid names otherwise."""
        for h in self.hosts:
            if h.name == name:
                return h
        names = ", ".join(h.name for h in self.hosts)
        raise BadValue(f"no host {name!r} in testbed {self.instance!r} (hosts: {names})")

    def by_role(self, role: str) -> list[Host]:
        """Hosts with the given role, in plan order."""
        return [h for h in self.hosts if h.role == role]

    @property
    def tor_rack_ports(self) -> list[str]:
        """The ToR's rack-facing ports (one per rack-A host), without the uplink."""
        return [link.b_dev for link in self.links if link.b == TOR and link.a != CORE]


def validate_instance(name: str) -> str:
    """Return `name` if it is a valid instance name, else raise `BadValue`."""
    if not _INSTANCE_RE.fullmatch(name):
        raise BadValue(
            f"bad testbed instance name {name!r}: 1 to 10 characters, lowercase letters and "
            "digits, starting with a letter"
        )
    return name


def namespace(instance: str, host: str) -> str:
    """The namespace name of `host` in `instance`."""
    return f"{instance}-{host}"


def plan(instance: str, datanodes: int = 3, clients: int = DEFAULT_CLIENTS) -> Topology:
    """Lay out an instance with `clients` compute hosts and `datanodes` DataNodes.

    Raises `BadValue` for an invalid instance name or counts out of range (1..32 DataNodes,
    1..9 clients).
    """
    validate_instance(instance)
    if not 1 <= datanodes <= MAX_DATANODES:
        raise BadValue(f"--datanodes must be between 1 and {MAX_DATANODES}, not {datanodes}")
    if not 1 <= clients <= 9:
        raise BadValue(f"clients must be between 1 and 9, not {clients}")

    def mk(name: str, role: str, address: str | None, rack: str | None) -> Host:
        return Host(name, role, namespace(instance, name), address, rack)

    hosts = [mk(f"c{i}", "client", f"198.18.1.{10 + i}", RACK_A) for i in range(1, clients + 1)]
    hosts.append(mk(TOR, "tor", TOR_ADDRESS, None))
    hosts.append(mk(CORE, "core", None, None))
    hosts.append(mk("nn", "namenode", "198.18.2.10", RACK_B))
    hosts += [
        mk(f"dn{i}", "datanode", f"198.18.2.{10 + i}", RACK_B) for i in range(1, datanodes + 1)
    ]

    links = [Link(h.name, HOST_PORT, TOR, h.name) for h in hosts if h.role == "client"]
    links.append(Link(TOR, UPLINK_TOR_PORT, CORE, UPLINK_CORE_PORT))
    links += [Link(h.name, HOST_PORT, CORE, h.name) for h in hosts if h.rack == RACK_B]
    return Topology(instance, tuple(hosts), tuple(links))


def tbf_burst_bytes(rate_bps: int) -> int:
    """The token-bucket depth tbf gets for `rate_bps`: 1 ms of traffic, at least 64 KiB.

    64 KiB lets one full GSO segment through without tbf having to split it; above that a
    deeper bucket would let bursts beat the configured rate. A transfer of S bytes therefore
    takes at least (S - burst) / rate, which the shaping test allows for.
    """
    return max(rate_bps // 8 // 1000, 64 * 1024)


def shaping_commands(topo: Topology, shaping: Shaping, shaper: str = "netem") -> list[list[str]]:
    """tc commands that (re)apply `shaping` to both ends of the uplink.

    `shaper` is ``netem`` (rate and delay) or ``tbf`` (rate only, for kernels built without
    netem, such as this project's CI machines). Raises `BadValue` for another shaper.
    """
    if shaper == "netem":
        spec = [
            "netem",
            "delay",
            format_delay(shaping.delay_ms),
            "rate",
            format_rate(shaping.rate_bps),
            "limit",
            str(_NETEM_LIMIT_PACKETS),
        ]
    elif shaper == "tbf":
        spec = [
            "tbf",
            "rate",
            format_rate(shaping.rate_bps),
            "burst",
            str(tbf_burst_bytes(shaping.rate_bps)),
            # Queue bound as a time: long enough that TCP sees a slow link, not a lossy one.
            "latency",
            "50ms",
        ]
    else:
        raise BadValue(f"unknown shaper {shaper!r} (known: netem, tbf)")
    tor, core = topo.host(TOR).namespace, topo.host(CORE).namespace
    return [
        ["tc", "-n", tor, "qdisc", "replace", "dev", UPLINK_TOR_PORT, "root", *spec],
        ["tc", "-n", core, "qdisc", "replace", "dev", UPLINK_CORE_PORT, "root", *spec],
    ]


def apply_shaping(topo: Topology, shaping: Shaping, shaper: str | None = None) -> str:
    """Shape the uplink now; returns the shaper used (``netem`` or ``tbf``).

    With `shaper` None, netem is tried first and tbf used if the kernel has no netem; the
    caller should then warn that the delay is not emulated. Raises `StartupFailed` if tc fails
    for another reason.
    """
    if shaper is None:
        try:
            apply(shaping_commands(topo, shaping, "netem"))
            return "netem"
        except StartupFailed as exc:
            if "qdisc kind is unknown" not in str(exc):
                raise
        shaper = "tbf"
    apply(shaping_commands(topo, shaping, shaper))
    return shaper


def _kernel_bridge_commands(topo: Topology) -> list[list[str]]:
    """Kernel ToR mode: join the ToR's rack ports and its uplink with one Linux bridge."""
    ns = topo.host(TOR).namespace
    cmds = [["ip", "-n", ns, "link", "add", BRIDGE, "type", "bridge", "stp_state", "0"]]
    for port in [*topo.tor_rack_ports, UPLINK_TOR_PORT]:
        cmds.append(["ip", "-n", ns, "link", "set", port, "master", BRIDGE, "up"])
    cmds.append(
        ["ip", "-n", ns, "addr", "add", f"{TOR_ADDRESS}/{SEGMENT_PREFIX_LEN}", "dev", BRIDGE]
    )
    cmds.append(["ip", "-n", ns, "link", "set", BRIDGE, "up"])
    return cmds


def _dpdk_port_commands(topo: Topology) -> list[list[str]]:
    """DPDK ToR mode: the ToR's ports up, unbridged and address-less; the data plane owns them.

    ARP is off on them: the ToR's address lives on the data plane's tap, and the kernel would
    otherwise answer the rack's ARP requests for it on every port with that port's own MAC.
    """
    ns = topo.host(TOR).namespace
    return [
        ["ip", "-n", ns, "link", "set", port, "arp", "off", "up"]
        for port in [*topo.tor_rack_ports, UPLINK_TOR_PORT]
    ]


# How the ToR's ports are joined. "kernel" (the kernel-mode ToR, `testbed up --tor kernel`)
# is a plain bridge as far as the network is concerned: the block engine and its nftables
# interception are started on top of it afterwards (testbed.tor). "bridge" is the same network
# under its original name. "dpdk" leaves the ports to the data plane (`torswitch dataplane
# serve`, started by testbed.tor), so nothing is switched until it runs.
TOR_MODES = {
    "kernel": _kernel_bridge_commands,
    "bridge": _kernel_bridge_commands,
    "dpdk": _dpdk_port_commands,
}


def build_commands(topo: Topology, tor_mode: str = "bridge") -> list[list[str]]:
    """Every command, in order, that builds `topo` from nothing, shaping aside (see
    `apply_shaping`, which has to probe the kernel). Pure: runs nothing.

    Raises `BadValue` for an unknown `tor_mode`.
    """
    if tor_mode not in TOR_MODES:
        raise BadValue(f"unknown ToR mode {tor_mode!r} (known: {', '.join(TOR_MODES)})")
    cmds: list[list[str]] = []
    for h in topo.hosts:
        cmds.append(["ip", "netns", "add", h.namespace])
    for h in topo.hosts:
        cmds.append(["ip", "-n", h.namespace, "link", "set", "lo", "up"])
        # No IPv6: router solicitations and MLD reports would otherwise cross the ToR and
        # show up in every packet capture and data-plane counter.
        cmds.append(
            netns.exec_argv(
                h.namespace,
                [
                    "sysctl",
                    "-q",
                    "-w",
                    "net.ipv6.conf.all.disable_ipv6=1",
                    "net.ipv6.conf.default.disable_ipv6=1",
                ],
            )
        )
    by_name = {h.name: h for h in topo.hosts}
    for link in topo.links:
        a, b = by_name[link.a].namespace, by_name[link.b].namespace
        cmds.append(
            [
                "ip",
                "-n",
                a,
                "link",
                "add",
                link.a_dev,
                "type",
                "veth",
                "peer",
                "name",
                link.b_dev,
                "netns",
                b,
            ]
        )
    cmds += TOR_MODES[tor_mode](topo)
    core = topo.host(CORE).namespace
    cmds.append(["ip", "-n", core, "link", "add", BRIDGE, "type", "bridge", "stp_state", "0"])
    for link in topo.links:
        if link.b == CORE:
            cmds.append(["ip", "-n", core, "link", "set", link.b_dev, "master", BRIDGE, "up"])
    cmds.append(["ip", "-n", core, "link", "set", BRIDGE, "up"])
    for h in topo.hosts:
        if h.role in ("tor", "core"):
            continue
        cmds.append(
            [
                "ip",
                "-n",
                h.namespace,
                "addr",
                "add",
                f"{h.address}/{SEGMENT_PREFIX_LEN}",
                "dev",
                HOST_PORT,
            ]
        )
        cmds.append(["ip", "-n", h.namespace, "link", "set", HOST_PORT, "up"])
        # Transmit checksum offload off: a veth otherwise hands out TCP segments with a partial
        # checksum, which a DPDK ToR (af_packet in, tap out) re-injects as corrupt frames.
        cmds.append(netns.exec_argv(h.namespace, ["ethtool", "-K", HOST_PORT, "tx", "off"]))
    return cmds


def apply(commands: Iterable[Sequence[str]]) -> None:
    """Run `commands` in order; the first failure raises `StartupFailed`."""
    for argv in commands:
        netns.run(argv)


def instance_namespaces(instance: str) -> list[str]:
    """Existing namespaces that belong to `instance`, found by name alone.

    `down` relies on this rather than on saved state, so it also cleans up after an `up` that
    died before writing its state. Only names a plan can produce are matched, so an instance
    called ``tsw`` never touches a namespace of an instance called ``tsw2``.
    """
    validate_instance(instance)
    own = re.compile(re.escape(instance) + r"-(c[0-9]|dn[0-9]{1,2}|nn|tor-a|core)")
    return [ns for ns in netns.list_namespaces() if own.fullmatch(ns)]


def read_shaping(topo: Topology) -> tuple[str, Shaping] | None:
    """The shaper and shaping now on the core end of the uplink (reads go that way), or None
    if the uplink is not shaped or the namespace is gone."""
    ns = topo.host(CORE).namespace
    if not netns.exists(ns):
        return None
    proc = netns.run(["tc", "-j", "qdisc", "show", "dev", UPLINK_CORE_PORT], ns=ns, check=False)
    if proc.returncode != 0:
        return None
    for qdisc in json.loads(proc.stdout or "[]"):
        options = qdisc.get("options", {})
        # tc's JSON gives rates in bytes per second; netem's delay in seconds.
        if qdisc.get("kind") == "netem" and "rate" in options:
            delay_s = float(options.get("delay", {}).get("delay", 0.0))
            rate = int(options["rate"]["rate"]) * 8
            return "netem", Shaping(rate_bps=rate, delay_ms=delay_s * 1000)
        if qdisc.get("kind") == "tbf":
            return "tbf", Shaping(rate_bps=int(options["rate"]) * 8, delay_ms=0.0)
    return None
