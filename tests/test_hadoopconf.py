"""torswitch.hadoopconf: site files, precedence, defaults, sizes and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from torswitch.checksum import ChecksumSpec, ChecksumType
from torswitch.errors import ConfigError
from torswitch.hadoopconf import HadoopConf, parse_host_port, parse_size


def site(path: Path, props: dict[str, str]) -> None:
    body = "".join(
        f"  <property><name>{k}</name><value>{v}</value></property>\n"
        for k, v in props.items()
    )
    path.write_text(f'<?xml version="1.0"?>\n<configuration>\n{body}</configuration>\n')


def test_reads_both_files_with_hdfs_site_winning(tmp_path: Path) -> None:
    (tmp_path / "core-site.xml").write_text(
        "<configuration>"
        "<property><name>fs.defaultFS</name><value>hdfs://198.18.2.10:9000</value></property>"
        "<property><name>dfs.blocksize</name><value>1m</value></property>"
        "<property><name>base</name><value>/srv/tb</value></property>"
        "</configuration>"
    )
    (tmp_path / "hdfs-site.xml").write_text(
        "<configuration>"
        "<property><name>dfs.blocksize</name><value> 8m </value></property>"
        "<property><name>dfs.checksum.type</name><value>crc32</value></property>"
        "<property><name>dfs.bytes-per-checksum</name><value>1024</value></property>"
        "<property><name>dfs.datanode.data.dir</name><value>${base}/dn1</value></property>"
        "<property><name>x</name><value>${nowhere}/y</value></property>"
        "</configuration>"
    )
    conf = HadoopConf.load(tmp_path)
    assert conf.namenode_address() == ("198.18.2.10", 9000)
    assert conf.block_size() == 8 << 20
    assert conf.checksum() == ChecksumSpec(ChecksumType.CRC32, 1024)
    assert conf.get("dfs.datanode.data.dir") == "/srv/tb/dn1"
    assert conf.get("x") == "${nowhere}/y"
    assert conf.datanode_address() == ("0.0.0.0", 9866)  # Hadoop's default
    assert conf.socket_timeout() == 60.0
    assert conf.sources["dfs.blocksize"].endswith("hdfs-site.xml")


def test_default_port_and_bad_uris(tmp_path: Path) -> None:
    site(tmp_path / "core-site.xml", {"fs.defaultFS": "hdfs://nn.example"})
    assert HadoopConf.load(tmp_path).namenode_address() == ("nn.example", 8020)
    for bad in ("file:///", "hdfs://", "s3a://bucket", "hdfs://nn:99999"):
        site(tmp_path / "core-site.xml", {"fs.defaultFS": bad})
        with pytest.raises(ConfigError, match="fs.defaultFS"):
            HadoopConf.load(tmp_path).namenode_address()
    site(tmp_path / "core-site.xml", {"fs.defaultFS": "hdfs://ns1"})
    site(tmp_path / "hdfs-site.xml", {"dfs.nameservices": "ns1"})
    with pytest.raises(ConfigError, match="HA nameservice"):
        HadoopConf.load(tmp_path).namenode_address()


def test_bad_files_name_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        HadoopConf.load(tmp_path / "missing")
    with pytest.raises(ConfigError, match="none of"):
        HadoopConf.load(tmp_path)
    (tmp_path / "core-site.xml").write_text("<configuration>\n<property>\n</configuration>\n")
    with pytest.raises(ConfigError, match=r"core-site.xml: line 3"):
        HadoopConf.load(tmp_path)
    (tmp_path / "core-site.xml").write_text("<conf/>")
    with pytest.raises(ConfigError, match="expected <configuration>"):
        HadoopConf.load(tmp_path)
    (tmp_path / "core-site.xml").write_text("<configuration><property/></configuration>")
    with pytest.raises(ConfigError, match="has no <name>"):
        HadoopConf.load(tmp_path)


def test_bad_values(tmp_path: Path) -> None:
    site(tmp_path / "hdfs-site.xml", {
        "dfs.checksum.type": "md5", "dfs.blocksize": "lots", "flag": "maybe",
    })
    conf = HadoopConf.load(tmp_path)
    with pytest.raises(ConfigError, match="dfs.checksum.type: unknown checksum type 'md5'"):
        conf.checksum()
    site(tmp_path / "hdfs-site.xml", {"dfs.bytes-per-checksum": "x"})
    with pytest.raises(ConfigError, match="not an integer"):
        HadoopConf.load(tmp_path).checksum()
    site(tmp_path / "hdfs-site.xml", {"dfs.bytes-per-checksum": "0"})
    with pytest.raises(ConfigError, match="out of range"):
        HadoopConf.load(tmp_path).checksum()
    site(tmp_path / "hdfs-site.xml", {
        "dfs.checksum.type": "md5", "dfs.blocksize": "lots", "flag": "maybe",
    })
    conf = HadoopConf.load(tmp_path)
    with pytest.raises(ConfigError, match="not a size"):
        conf.block_size()
    with pytest.raises(ConfigError, match="true or false"):
        conf.get_bool("flag")


@pytest.mark.parametrize(("text", "want"), [
    ("134217728", 134217728), ("128m", 128 << 20), ("8M", 8 << 20), ("4k", 4096), ("1g", 1 << 30),
])
def test_sizes(text: str, want: int) -> None:
    assert parse_size(text) == want


@pytest.mark.parametrize("text", ["", "m", "1.5m", "-1", "12q"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_size(text)


def test_host_port() -> None:
    assert parse_host_port("198.18.2.10:8020") == ("198.18.2.10", 8020)
    assert parse_host_port("nn", default_port=8020) == ("nn", 8020)
    assert parse_host_port("[::1]:8020") == ("::1", 8020)
    for bad in (":8020", "nn:", "nn:x", "nn:0", "nn:70000"):
        with pytest.raises(ConfigError):
            parse_host_port(bad)
