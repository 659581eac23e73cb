"""Reading Hadoop's /jmx servlet (NameNode and DataNode web ports) from inside a namespace.

Each request opens its TCP connection in the daemon's own namespace (`netns.connect`), so a
probe of a DataNode never crosses the ToR and never shows up in what the ToR counts.

Mind the metrics period: metrics2 beans such as ``DataNodeActivity-*`` are refreshed at most
once per period (1 s in this testbed, see hadoop-conf/hadoop-metrics2.properties). Beans like
``FSNamesystemState`` are read live.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from dataclasses import dataclass
from typing import Any

from torswitch.testbed import netns

DATANODE_ACTIVITY = "Hadoop:service=DataNode,name=DataNodeActivity-*"
NAMESYSTEM_STATE = "Hadoop:service=NameNode,name=FSNamesystemState"
NAMENODE_INFO = "Hadoop:service=NameNode,name=NameNodeInfo"

# The DataNode read counters the testbed reports (Hadoop's Metrics.md, DataNodeActivity).
READ_COUNTERS = ("BytesRead", "BlocksRead", "ReadBlockOpNumOps", "TotalReadTime")


class JmxError(OSError):
    """The servlet could not be reached or answered something other than JMX JSON."""


@dataclass(frozen=True)
class JmxReader:
    """Reads beans from the /jmx servlet at `address`:`port` as seen from namespace `ns`.

    `timeout` is in seconds, per request.
    """

    ns: str
    address: str
    port: int
    timeout: float = 5.0

    def beans(self, query: str) -> list[dict[str, Any]]:
        """All beans matching `query` (an ObjectName pattern such as ``Hadoop:service=*``).

        Raises `JmxError` on connection failure, HTTP errors or a malformed answer.
        """
        path = "/jmx?qry=" + urllib.parse.quote(query, safe=":=,*")
        try:
            sock = netns.connect(self.ns, self.address, self.port, self.timeout)
        except OSError as exc:
            raise JmxError(f"jmx {self.address}:{self.port} in {self.ns}: {exc}") from exc
        conn = http.client.HTTPConnection(self.address, self.port, timeout=self.timeout)
        conn.sock = sock  # already connected, inside the namespace
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise JmxError(f"jmx {self.address}:{self.port}{path}: {exc}") from exc
        finally:
            conn.close()
        if resp.status != 200:
            raise JmxError(f"jmx {self.address}:{self.port}{path}: HTTP {resp.status}")
        try:
            beans = json.loads(body)["beans"]
        except (ValueError, KeyError, TypeError) as exc:
            raise JmxError(f"jmx {self.address}:{self.port}{path}: bad answer: {exc}") from exc
        if not isinstance(beans, list):
            raise JmxError(f"jmx {self.address}:{self.port}{path}: 'beans' is not a list")
        return beans

    def bean(self, query: str) -> dict[str, Any]:
        """The single bean matching `query`. Raises `JmxError` if none matches."""
        found = self.beans(query)
        if not found:
            raise JmxError(f"jmx {self.address}:{self.port}: no bean matches {query!r}")
        return found[0]


def read_counters(bean: dict[str, Any]) -> dict[str, int]:
    """The `READ_COUNTERS` of one DataNodeActivity bean (missing ones as 0)."""
    return {name: int(bean.get(name, 0)) for name in READ_COUNTERS}
