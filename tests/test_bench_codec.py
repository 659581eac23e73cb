"""`torswitch bench codec` runs end to end on tiny inputs (figures are reported, not judged)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from torswitch.bench import codec

DATA = Path(__file__).parent / "data"


def args(**kw: object) -> argparse.Namespace:
    base: dict[str, object] = {"mib": 1, "input": None, "feed_kib": 64, "seconds": 0.001}
    return argparse.Namespace(**(base | kw))


def test_synthesized_reply() -> None:
    report = codec.run(args())
    figures = json.loads(report.to_json())
    for key in ("parse_gbps", "parse_verify_gbps", "memcpy_gbps", "crc32c_native_gbps",
                "crc32c_chunked_native_gbps", "crc32_chunked_native_gbps", "zlib_crc32_gbps"):
        assert figures[key] > 0, key
    assert figures["data_bytes"] == 1 << 20
    assert "crc32c_chunked_native_gbps >= 5" in figures["targets_met"]
    assert "DTP stream parse" in report.to_table()


def test_recorded_reply_input(tmp_path: Path) -> None:
    text = (DATA / "dtp_read_reply_mid_block.hex").read_text().splitlines()
    raw = bytes.fromhex("".join(ln for ln in text if not ln.startswith("#")))
    path = tmp_path / "reply.bin"
    path.write_bytes(raw)
    figures = codec.run(args(input=str(path))).figures
    assert figures["reply_bytes"] == len(raw) and figures["data_bytes"] == 5632
