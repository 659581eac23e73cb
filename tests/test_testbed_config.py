"""torswitch.testbed.config: rendering the hadoop-conf/ templates for each JVM."""

from __future__ import annotations

from pathlib import Path

import pytest

from torswitch.errors import ConfigError
from torswitch.testbed import config, topology
from torswitch.testbed.state import repo_root

TEMPLATES = repo_root() / "hadoop-conf"


def render(tmp_path: Path, process: str, host: str, **settings: int) -> dict[str, str]:
    topo = topology.plan("tsw", datanodes=3)
    values = config.process_values(
        topo,
        config.ClusterSettings(**settings),
        process=process,
        host=topo.host(host),
        conf_root=tmp_path / "conf",
        data_root=tmp_path / "data",
    )
    out = tmp_path / "conf" / process
    config.write_conf_dir(TEMPLATES, out, values)
    props = config.read_properties(out / "core-site.xml")
    props.update(config.read_properties(out / "hdfs-site.xml"))
    return props


def test_datanode_conf(tmp_path: Path) -> None:
    props = render(tmp_path, "dn2", "dn2", block_size=4 << 20)
    assert props["fs.defaultFS"] == "hdfs://198.18.2.10:8020"
    assert props["dfs.blocksize"] == str(4 << 20)
    assert props["dfs.replication"] == "1"
    assert props["dfs.datanode.hostname"] == "dn2"
    assert props["dfs.datanode.data.dir"] == f"file://{tmp_path}/data/dn2/blocks"
    assert props["hadoop.tmp.dir"] == f"{tmp_path}/data/dn2/tmp"
    assert props["dfs.namenode.safemode.min.datanodes"] == "3"
    assert props["dfs.block.scanner.volume.bytes.per.second"] == "0"
    assert props["dfs.datanode.max.locked.memory"] == "0"
    assert props["dfs.heartbeat.interval"] == "1"
    # Never a SOCKS factory in any process (testbed doc, section 3).
    assert "Socks" not in props["hadoop.rpc.socket.factory.class.default"]


def test_namenode_conf_and_rack_table(tmp_path: Path) -> None:
    props = render(tmp_path, "nn", "nn")
    assert props["dfs.namenode.name.dir"] == f"file://{tmp_path}/data/nn/name"
    assert props["dfs.namenode.http-address"] == "198.18.2.10:9870"
    assert props["net.topology.node.switch.mapping.impl"] == "org.apache.hadoop.net.TableMapping"
    table = Path(props["net.topology.table.file.name"])
    assert table == tmp_path / "conf" / "nn" / "topology.table"
    entries = [
        line.split() for line in table.read_text().splitlines() if line and not line.startswith("#")
    ]
    assert entries == [
        ["198.18.1.11", "/rack-a"],
        ["198.18.1.12", "/rack-a"],
        ["198.18.2.10", "/rack-b"],
        ["198.18.2.11", "/rack-b"],
        ["198.18.2.12", "/rack-b"],
        ["198.18.2.13", "/rack-b"],
    ]


def test_static_files_are_copied(tmp_path: Path) -> None:
    render(tmp_path, "client", "c1")
    out = tmp_path / "conf" / "client"
    assert "*.period=1" in (out / "hadoop-metrics2.properties").read_text()
    log4j = (out / "log4j.properties").read_text()
    assert "log4j.appender.console.target=System.err" in log4j
    assert "DataNode.clienttrace=DEBUG" in log4j


def test_every_setting_has_a_comment_saying_why() -> None:
    for name in config.TEMPLATES:
        text = (TEMPLATES / name).read_text()
        blocks = text.split("<property>")[1:]
        assert blocks
        for block in blocks:
            assert "<!--" in block.split("<name>")[0], f"{name}: uncommented {block[:80]}"


def test_missing_placeholder_value_is_an_error() -> None:
    with pytest.raises(ConfigError, match="x.xml: no value for placeholder.*FOO"):
        config.render_text("<a>@FOO@ @BAR@</a>", {"BAR": "1"}, "x.xml")
    assert config.render_text("a@B@c", {"B": "-"}, "t") == "a-c"


def test_broken_xml_after_rendering_is_refused(tmp_path: Path) -> None:
    templates = tmp_path / "t"
    templates.mkdir()
    for name in (*config.TEMPLATES, config.TOPOLOGY_TEMPLATE, *config.STATIC_FILES):
        (templates / name).write_text((TEMPLATES / name).read_text())
    (templates / "hdfs-site.xml").write_text("<configuration>@BLOCK_SIZE@</configuration>")
    topo = topology.plan("tsw")
    values = config.process_values(
        topo,
        config.ClusterSettings(),
        process="nn",
        host=topo.host("nn"),
        conf_root=tmp_path,
        data_root=tmp_path,
    )
    values["BLOCK_SIZE"] = "<oops"
    with pytest.raises(ConfigError, match="does not parse"):
        config.write_conf_dir(templates, tmp_path / "out", values)
    (templates / "log4j.properties").unlink()
    values["BLOCK_SIZE"] = "1"
    with pytest.raises(ConfigError, match="missing configuration file"):
        config.write_conf_dir(templates, tmp_path / "out", values)


@pytest.mark.parametrize(
    ("block_size", "replication", "match"),
    [
        (512 << 10, 1, "at least 1 MiB"),
        ((4 << 20) + 100, 1, "multiple of 512"),
        (4 << 20, 0, "replication"),
        (4 << 20, 4, "replication"),
    ],
)
def test_cluster_settings_validation(block_size: int, replication: int, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        config.ClusterSettings(block_size, replication).validate(datanodes=3)
    config.ClusterSettings(4 << 20, 3).validate(datanodes=3)


def test_hosts_file_maps_own_name_and_all_hosts() -> None:
    import socket

    topo = topology.plan("tsw")
    text = config.hosts_file_text(topo, topo.host("dn1"))
    lines = text.splitlines()
    assert lines[0] == "127.0.0.1 localhost"
    assert lines[1] == f"198.18.2.11 {socket.gethostname()}"
    assert "198.18.2.10 nn" in lines and "198.18.1.11 c1" in lines
    assert not any(line.endswith(" core") for line in lines)
