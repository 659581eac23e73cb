"""Kernel-mode interception of HDFS reads at a Linux-bridge ToR (tor-interception.md, section A).

The ToR is a Linux bridge (``br0``) joining the rack ports and the uplink. Two nftables tables,
owned by torswitch alone, divert new rack-side connections to DataNode transfer ports into the
block engine, which listens on a local port of the ToR::

    frame on a rack port (c1, c2 ...)
      |
      v  table bridge torswitch_bridge, chain prerouting (priority -300, before the bridge
      |  decides where the frame goes)
      |    not IPv4 TCP to a transfer port (9866) .................... bridged as usual
      |    a packet of a flow in @flows (diverted earlier) ........... divert
      |    a SYN (new flow) arriving on a port in @rack_ports ....... add to @flows, divert
      |    anything else (a flow that began while not diverting) ..... bridged as usual
      |
      v  chain divert: mark 0x7473, pkttype host, Ethernet destination := the bridge's MAC,
      |  so the bridge hands the frame up to the ToR's own IP stack instead of forwarding it
      v
      table ip torswitch_nat, chain prerouting (nat): marked TCP to a transfer port
      ->  redirect to :<engine port>; the engine reads the DataNode's address with
          getsockopt(SOL_IP, SO_ORIGINAL_DST) and conntrack makes its replies come from it.

Why each piece is there:

* Only new flows are diverted. A connection that was bridged when the rules went in (a client
  that fell back to the DataNode while the engine was down) keeps going to the DataNode; taken
  over mid-stream it would only get a reset from the ToR. Diverted flows are remembered in the
  dynamic set @flows by their 4-tuple and forgotten after `flow_idle_s` without a packet.
* The mark gates the nat rule. With br_netfilter loaded (it is on this project's machines, and
  it applies to every namespace), bridged IPv4 frames also traverse the ip-family hooks, so an
  ungated redirect would capture connections the bridge chain chose to leave alone.
* Rack ports are elements of @rack_ports with a timeout: a lease. The supervisor that installed
  the rules renews it every second or so; if the supervisor dies without removing the rules
  (kill -9), new connections go straight to the DataNodes again once the lease runs out.
* Install and remove are single nft transactions (declare, delete, define), so the tables are
  always either complete or absent, and repeating either is harmless. `install` leaves tables
  that are already as wanted untouched, since recreating them would forget the diverted flows.

Everything here runs nft and ip inside one network namespace: ``ip netns exec NS nft ...`` when
a namespace is named, else in the caller's own namespace, which must then not be the host's
unless the caller says so explicitly (a real ToR runs in its host namespace; a testbed never
does).
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

from torswitch.errors import TorswitchError

log = logging.getLogger(__name__)

TABLE_BRIDGE = "torswitch_bridge"
TABLE_NAT = "torswitch_nat"
#: skb mark of diverted packets; the nat rule redirects only packets carrying it. "ts" in ASCII.
DIVERT_MARK = 0x7473
#: Bridge-family hook priority of the diverting chain: before the bridge's forwarding decision
#: (NF_BR_PRI_NAT_DST_BRIDGED is -300) and before br_netfilter's ip-family hooks (priority 0).
BRIDGE_PRIORITY = -300
DEFAULT_TRANSFER_PORT = 9866
DEFAULT_ENGINE_PORT = 19866
DEFAULT_BRIDGE = "br0"
DEFAULT_UPLINKS = ("uplink",)
DEFAULT_LEASE_S = 5.0
NFT_TIMEOUT_S = 10.0
NETNS_RUN_DIR = "/run/netns"

# Rule comments, used to find each rule's counter in `nft -j` output.
_KNOWN_FLOW = "known-flow"
_NEW_FLOW = "new-flow"
_DIVERT = "divert"
_REDIRECT = "redirect"
_FP_TAG = "fp="


class InterceptionError(TorswitchError):
    """nft or ip failed, the bridge is missing, or the rules would touch the host namespace."""


@dataclasses.dataclass(frozen=True)
class InterceptSpec:
    """What to intercept, and where to send it.

    transfer_ports: DataNode DataTransferProtocol ports (dfs.datanode.address), at most 16.
    engine_port: the engine's listening port in the ToR.
    engine_address: None redirects to the bridge's own address (the engine must listen on it
      or on 0.0.0.0); an IPv4 address DNATs there instead.
    bridge: the ToR's bridge. rack_ports: its rack-facing ports; None means every port of the
      bridge except `uplinks`, looked up at each install and renewal.
    destinations: IPv4 addresses or networks of the DataNodes; empty means any destination.
    lease_s: how long the rack ports stay leased without a renewal (None: until removed).
    flow_idle_s: a diverted flow is forgotten after this many seconds without a packet.
    max_flows: capacity of @flows; when it is full, new flows are bridged (fail-open).
    """

    transfer_ports: tuple[int, ...] = (DEFAULT_TRANSFER_PORT,)
    engine_port: int = DEFAULT_ENGINE_PORT
    engine_address: str | None = None
    bridge: str = DEFAULT_BRIDGE
    rack_ports: tuple[str, ...] | None = None
    uplinks: tuple[str, ...] = DEFAULT_UPLINKS
    destinations: tuple[str, ...] = ()
    lease_s: float | None = DEFAULT_LEASE_S
    flow_idle_s: int = 600
    max_flows: int = 65536

    def __post_init__(self) -> None:
        if not self.transfer_ports or len(self.transfer_ports) > 16:
            raise ValueError("between 1 and 16 transfer ports are needed")
        for port in (*self.transfer_ports, self.engine_port):
            if not 0 < port < 65536:
                raise ValueError(f"invalid TCP port {port}")
        if self.engine_address is not None:
            try:
                address = ipaddress.IPv4Address(self.engine_address)
            except ValueError:
                raise ValueError(f"engine address {self.engine_address!r} is not IPv4") from None
            # Prerouting DNAT to a loopback address is dropped as martian by the kernel.
            if address.is_loopback:
                raise ValueError("the engine cannot be reached on a loopback address via DNAT")
        for name in (self.bridge, *(self.rack_ports or ()), *self.uplinks):
            _check_ifname(name)
        if self.rack_ports is not None and not self.rack_ports:
            raise ValueError("rack_ports is empty (None means: every bridge port but the uplinks)")
        for dest in self.destinations:
            try:
                ipaddress.IPv4Network(dest, strict=False)
            except ValueError as exc:
                raise ValueError(f"destination {dest!r}: {exc}") from None
        if self.lease_s is not None and self.lease_s < 0.5:
            raise ValueError(f"lease of {self.lease_s} s is too short (at least 0.5 s)")
        if self.flow_idle_s < 1 or self.max_flows < 1:
            raise ValueError("flow_idle_s and max_flows must be positive")


def _check_ifname(name: str) -> None:
    # IFNAMSIZ is 16 with the terminating NUL; quotes would break out of the nft string.
    if not 0 < len(name) < 16 or any(c in name for c in "\"' /\\\n\t"):
        raise ValueError(f"bad interface name {name!r}")


@dataclasses.dataclass(frozen=True)
class BridgeInfo:
    """What install needs to know about the bridge: its MAC and its rack ports."""

    mac: str
    rack_ports: tuple[str, ...]


@dataclasses.dataclass
class InterceptState:
    """The interception as nft reports it.

    installed: both tables present. leased_ports: rack ports whose lease has not run out
    (interception of new flows is active only if this is non-empty). flows: diverted flows
    remembered. counters: packets per rule, keyed ``known_flow``, ``new_flow``, ``divert``,
    ``redirect`` (connections redirected to the engine).
    """

    installed: bool = False
    fingerprint: str | None = None
    leased_ports: list[str] = dataclasses.field(default_factory=list)
    flows: int = 0
    counters: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def active(self) -> bool:
        """Installed, with at least one rack port leased: new connections get intercepted."""
        return self.installed and bool(self.leased_ports)

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "active": self.active}


# ---- ruleset text (pure) ----------------------------------------------------------------------


def _set_of(items: Sequence[str]) -> str:
    return "{ " + ", ".join(items) + " }"


def _ms(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def tables_text(spec: InterceptSpec, bridge_mac: str) -> str:
    """The definition of both tables, without the declare/delete prologue and without rack
    port elements. Its hash is the fingerprint `install` compares."""
    ports = _set_of([str(p) for p in spec.transfer_ports])
    four_tuple = "ip saddr . tcp sport . ip daddr . tcp dport"
    networks = [str(ipaddress.IPv4Network(d, strict=False)) for d in spec.destinations]
    dest_filter = f"\t\tip daddr != {_set_of(networks)} return\n" if networks else ""
    if spec.engine_address is None:
        target = f"redirect to :{spec.engine_port}"
    else:
        target = f"dnat to {spec.engine_address}:{spec.engine_port}"
    mark = f"0x{DIVERT_MARK:x}"
    return (
        f"table bridge {TABLE_BRIDGE} {{\n"
        f"\tset rack_ports {{\n"
        f"\t\ttype ifname\n"
        f"\t\tflags timeout\n"
        f"\t}}\n"
        f"\tset flows {{\n"
        f"\t\ttype ipv4_addr . inet_service . ipv4_addr . inet_service\n"
        f"\t\tsize {spec.max_flows}\n"
        f"\t\tflags dynamic,timeout\n"
        f"\t\ttimeout {spec.flow_idle_s}s\n"
        f"\t}}\n"
        f"\tchain prerouting {{\n"
        f"\t\ttype filter hook prerouting priority {BRIDGE_PRIORITY}; policy accept;\n"
        f"\t\tether type != ip return\n"
        f"\t\tip protocol != tcp return\n"
        f"\t\ttcp dport != {ports} return\n"
        f"{dest_filter}"
        f"\t\t{four_tuple} @flows update @flows {{ {four_tuple} }} counter goto divert"
        f' comment "{_KNOWN_FLOW}"\n'
        f"\t\ttcp flags & (syn | ack) == syn iifname @rack_ports"
        f' add @flows {{ {four_tuple} }} counter goto divert comment "{_NEW_FLOW}"\n'
        f"\t}}\n"
        f"\tchain divert {{\n"
        f"\t\tmeta mark set {mark} meta pkttype set host ether daddr set {bridge_mac}"
        f' counter accept comment "{_DIVERT}"\n'
        f"\t}}\n"
        f"}}\n"
        f"table ip {TABLE_NAT} {{\n"
        f"\tchain prerouting {{\n"
        f"\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
        f"\t\tmeta mark {mark} tcp dport {ports} counter {target}"
        f' comment "{_REDIRECT}"\n'
        f"\t}}\n"
        f"}}\n"
    )


def fingerprint(spec: InterceptSpec, bridge_mac: str) -> str:
    """A short hash of the tables `spec` and `bridge_mac` produce."""
    return hashlib.sha256(tables_text(spec, bridge_mac).encode()).hexdigest()[:16]


def lease_text(spec: InterceptSpec, rack_ports: Sequence[str]) -> str:
    """Replace the leased rack ports with `rack_ports`, each for `spec.lease_s` (one
    transaction: the set is never seen empty by a packet)."""
    lines = [f"flush set bridge {TABLE_BRIDGE} rack_ports"]
    if rack_ports:
        timeout = f" timeout {_ms(spec.lease_s)}" if spec.lease_s is not None else ""
        elements = _set_of([f'"{p}"{timeout}' for p in rack_ports])
        lines.append(f"add element bridge {TABLE_BRIDGE} rack_ports {elements}")
    return "\n".join(lines) + "\n"


def install_text(spec: InterceptSpec, bridge: BridgeInfo) -> str:
    """The whole install transaction: both tables replaced, rack ports leased.

    ``table X`` declares the table (a no-op if it exists) so that ``delete table X`` cannot
    fail; the new definition follows in the same transaction.
    """
    fp = fingerprint(spec, bridge.mac)
    tables = tables_text(spec, bridge.mac)
    # The fingerprint goes in as the bridge table's comment, for people, and into the divert
    # rule's comment, for `state` (nft 1.0.6 leaves table comments out of its JSON).
    tables = tables.replace(
        f"table bridge {TABLE_BRIDGE} {{\n",
        f'table bridge {TABLE_BRIDGE} {{\n\tcomment "torswitch {fp}"\n',
        1,
    ).replace(f'comment "{_DIVERT}"', f'comment "{_DIVERT} {_FP_TAG}{fp}"', 1)
    return (
        f"table bridge {TABLE_BRIDGE}\n"
        f"delete table bridge {TABLE_BRIDGE}\n"
        f"table ip {TABLE_NAT}\n"
        f"delete table ip {TABLE_NAT}\n" + tables + lease_text(spec, bridge.rack_ports)
    )


def remove_text() -> str:
    """The remove transaction: both tables gone, whether they existed or not."""
    return (
        f"table bridge {TABLE_BRIDGE}\n"
        f"delete table bridge {TABLE_BRIDGE}\n"
        f"table ip {TABLE_NAT}\n"
        f"delete table ip {TABLE_NAT}\n"
    )


def parse_state(listing: dict[str, Any]) -> InterceptState:
    """An `InterceptState` from ``nft -j list ruleset`` output (already parsed)."""
    state = InterceptState()
    tables: set[tuple[str, str]] = set()
    for item in listing.get("nftables", []):
        if "table" in item:
            t = item["table"]
            tables.add((t.get("family", ""), t.get("name", "")))
        elif "set" in item:
            s = item["set"]
            if (s.get("family"), s.get("table")) != ("bridge", TABLE_BRIDGE):
                continue
            elements = s.get("elem", [])
            if s.get("name") == "rack_ports":
                for e in elements:
                    value = e["elem"]["val"] if isinstance(e, dict) and "elem" in e else e
                    state.leased_ports.append(str(value))
            elif s.get("name") == "flows":
                state.flows = len(elements)
        elif "rule" in item:
            r = item["rule"]
            if r.get("table") not in (TABLE_BRIDGE, TABLE_NAT):
                continue
            words = str(r.get("comment", "")).split()
            for word in words[1:]:
                if word.startswith(_FP_TAG) and r.get("table") == TABLE_BRIDGE:
                    state.fingerprint = word.removeprefix(_FP_TAG)
            for expr in r.get("expr", []):
                if isinstance(expr, dict) and "counter" in expr and words:
                    key = words[0].replace("-", "_")
                    state.counters[key] = int(expr["counter"].get("packets", 0))
    state.installed = ("bridge", TABLE_BRIDGE) in tables and ("ip", TABLE_NAT) in tables
    state.leased_ports.sort()
    return state


# ---- running nft and ip -------------------------------------------------------------------------


def current_namespace_name() -> str | None:
    """The name (``ip netns``) of this process's network namespace, None if it has none.

    A named namespace is one ``ip netns add`` created, found under /run/netns. The host's own
    namespace has no name, and PID 1's namespace cannot always be read even by root (it may
    belong to another user namespace), so "named" is the test for "not the host's".
    """
    try:
        own = os.stat("/proc/self/ns/net")
    except OSError:
        return None
    try:
        entries = sorted(os.listdir(NETNS_RUN_DIR))
    except OSError:
        return None
    for name in entries:
        try:
            st = os.stat(os.path.join(NETNS_RUN_DIR, name))
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino):
            return name
    return None


def in_host_namespace() -> bool:
    """Whether this process runs outside every named network namespace (see
    `current_namespace_name`): then it is, for all we know, the host's."""
    return current_namespace_name() is None


class Interceptor:
    """Installs, renews and removes the interception in one network namespace.

    namespace: run nft and ip there (``ip netns exec``); None runs them in this process's own
    namespace, which is refused unless it is a named one (``ip netns``) or
    `allow_host_namespace` is given.
    Raises `InterceptionError` at construction for a missing nft or a refused namespace.
    """

    def __init__(
        self,
        spec: InterceptSpec,
        namespace: str | None = None,
        *,
        allow_host_namespace: bool = False,
        nft: str = "nft",
        ip: str = "ip",
    ) -> None:
        self.spec = spec
        self.namespace = namespace
        if shutil.which(nft) is None:
            raise InterceptionError(f"{nft} not found: install the Debian package nftables")
        if namespace is None and not allow_host_namespace and in_host_namespace():
            raise InterceptionError(
                "refusing to change the nftables of the host's own network namespace (this "
                "process is in no named namespace); run inside the ToR's namespace "
                "(ip netns exec NS ...) or name it"
            )
        self._nft, self._ip = nft, ip
        self._installed: str | None = None  # fingerprint of what this object installed

    # -- commands --

    def _argv(self, argv: Sequence[str]) -> list[str]:
        if self.namespace is None:
            return list(argv)
        return ["ip", "netns", "exec", self.namespace, *argv]

    def _run(self, argv: Sequence[str], stdin: str | None = None) -> str:
        full = self._argv(argv)
        try:
            proc = subprocess.run(
                full,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=NFT_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise InterceptionError(f"`{' '.join(full)}`: {exc}") from exc
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip()
            raise InterceptionError(f"`{' '.join(full)}` failed ({proc.returncode}): {detail}")
        return proc.stdout

    def _nft_apply(self, text: str) -> None:
        self._run([self._nft, "-f", "-"], stdin=text)

    def bridge_info(self) -> BridgeInfo:
        """The bridge's MAC and rack ports, read now. Raises `InterceptionError` if the
        bridge does not exist or (with discovered ports) has no rack port."""
        links = json.loads(self._run([self._ip, "-j", "link", "show"]) or "[]")
        bridge = next((ln for ln in links if ln.get("ifname") == self.spec.bridge), None)
        if bridge is None:
            where = f" in namespace {self.namespace}" if self.namespace else ""
            raise InterceptionError(f"no bridge {self.spec.bridge!r}{where}")
        if self.spec.rack_ports is not None:
            ports = self.spec.rack_ports
        else:
            ports = tuple(
                sorted(
                    ln["ifname"]
                    for ln in links
                    if ln.get("master") == self.spec.bridge
                    and ln["ifname"] not in self.spec.uplinks
                )
            )
            if not ports:
                raise InterceptionError(
                    f"bridge {self.spec.bridge!r} has no rack ports (its ports other than "
                    f"{', '.join(self.spec.uplinks)})"
                )
        return BridgeInfo(mac=str(bridge["address"]), rack_ports=ports)

    # -- operations --

    def state(self) -> InterceptState:
        """What is installed now."""
        return parse_state(json.loads(self._run([self._nft, "-j", "list", "ruleset"]) or "{}"))

    def install(self) -> BridgeInfo:
        """Intercept new flows from the rack ports, leased for `spec.lease_s`.

        Tables already installed for the same spec and bridge MAC are kept (their diverted
        flows with them) and only the lease is renewed; anything else is replaced in one
        transaction. Returns the bridge as found. Raises `InterceptionError`.
        """
        bridge = self.bridge_info()
        wanted = fingerprint(self.spec, bridge.mac)
        current = self.state()
        if current.installed and current.fingerprint == wanted:
            self._nft_apply(lease_text(self.spec, bridge.rack_ports))
        else:
            self._nft_apply(install_text(self.spec, bridge))
            log.info(
                "interception installed: TCP %s -> :%d, rack ports %s",
                ",".join(map(str, self.spec.transfer_ports)),
                self.spec.engine_port,
                ",".join(bridge.rack_ports),
            )
        self._installed = wanted
        return bridge

    def renew(self) -> BridgeInfo:
        """Renew the lease of the rack ports (picking up ports added to the bridge since).

        If the bridge's MAC changed (a Linux bridge takes its lowest port MAC unless one was
        set), the tables are reinstalled for the new one. Raises `InterceptionError`, also
        when the tables are gone: renewing never installs what somebody removed.
        """
        bridge = self.bridge_info()
        if self._installed is None:
            current = self.state()
            if not current.installed:
                raise InterceptionError("interception is not installed; nothing to renew")
            self._installed = current.fingerprint
        if self._installed != fingerprint(self.spec, bridge.mac):
            self._nft_apply(install_text(self.spec, bridge))
            self._installed = fingerprint(self.spec, bridge.mac)
        else:
            # Fails (no such set) if the tables were removed behind our back.
            self._nft_apply(lease_text(self.spec, bridge.rack_ports))
        return bridge

    def remove(self) -> None:
        """Remove both tables (idempotent). Diverted flows end: their next packets are
        bridged to the DataNode, which resets them. Raises `InterceptionError`."""
        self._installed = None
        self._nft_apply(remove_text())
        log.debug("interception removed")


def spec_for_engine(
    engine_listen: tuple[str, int],
    hadoop_conf_dir: str | None,
    **overrides: Any,
) -> InterceptSpec:
    """The spec for an engine listening on `engine_listen` (host, port): transfer ports from
    the Hadoop conf dir's dfs.datanode.address (9866 without one); a specific listen address
    is DNATed to, 0.0.0.0 redirected. `overrides` set other InterceptSpec fields.

    Raises ConfigError for an unreadable conf dir, ValueError for bad values.
    """
    from torswitch.dataplane import steer_ports_from_hadoop_conf

    host, port = engine_listen
    address = None if host in ("", "0.0.0.0", "*") else host
    return InterceptSpec(
        transfer_ports=steer_ports_from_hadoop_conf(hadoop_conf_dir),
        engine_port=port,
        engine_address=address,
        **overrides,
    )
