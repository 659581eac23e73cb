"""torswitch.blockcache: verified storage, ranges, admission and eviction, pins, persistence,
corruption of stored records, and a process killed mid-insert."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import lmdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torswitch import checksum
from torswitch.blockcache import BlockCache, BlockCacheError, BlockKey
from torswitch.checksum import ChecksumSpec, ChecksumType

SEG = 64 * 1024
SPEC = ChecksumSpec(ChecksumType.CRC32C, 512)


def block_bytes(key: BlockKey) -> bytes:
    seed = key.block_id.to_bytes(8, "big", signed=True)
    out = bytearray()
    counter = 0
    while len(out) < key.num_bytes:
        out += checksum.crc32c(seed + counter.to_bytes(4, "big")).to_bytes(4, "big") * 64
        counter += 1
    return bytes(out[: key.num_bytes])


def put_all(cache: BlockCache, key: BlockKey, spec: ChecksumSpec = SPEC) -> list[bool]:
    data = block_bytes(key)
    results = []
    for i in range(-(-key.num_bytes // SEG)):
        seg = data[i * SEG : (i + 1) * SEG]
        results.append(cache.put_segment(key, spec, i, seg,
                                         checksum.compute(spec.type, spec.bytes_per_checksum, seg)))
    return results


@pytest.fixture
def cache(tmp_path: pathlib.Path) -> Iterator[BlockCache]:
    c = BlockCache(tmp_path / "cache", capacity_bytes=64 << 20, segment_bytes=SEG)
    yield c
    c.close()


KEY = BlockKey("BP-1-198.18.1.2-1700000000000", 1073741825, 1001, 5 * SEG + 1234)


def test_roundtrip_whole_block(cache: BlockCache) -> None:
    assert all(put_all(cache, KEY))
    got = cache.get_range(KEY, 0, KEY.num_bytes)
    assert got is not None and got.offset == 0 and got.data == block_bytes(KEY)
    assert got.sums == checksum.compute(ChecksumType.CRC32C, 512, got.data)
    assert cache.stats.hits == 1 and cache.info(KEY).complete  # type: ignore[union-attr]


@settings(max_examples=60, deadline=None)
@given(offset=st.integers(0, KEY.num_bytes - 1), length=st.integers(1, 3 * SEG))
def test_ranges_are_chunk_aligned_and_exact(tmp_path_factory: pytest.TempPathFactory,
                                            offset: int, length: int) -> None:
    length = max(1, min(length, KEY.num_bytes - offset))
    path = tmp_path_factory.mktemp("c")
    with BlockCache(path, capacity_bytes=8 << 20, segment_bytes=SEG) as c:
        put_all(c, KEY)
        got = c.get_range(KEY, offset, length)
        assert got is not None
        assert got.offset == offset - offset % 512
        assert got.offset + len(got.data) >= offset + length
        assert got.data == block_bytes(KEY)[got.offset : got.offset + len(got.data)]
        assert len(got.sums) == 4 * -(-len(got.data) // 512)


def test_partial_block_serves_only_covered_ranges(cache: BlockCache) -> None:
    data = block_bytes(KEY)
    last = KEY.num_bytes // SEG
    tail = data[last * SEG :]
    assert cache.put_segment(KEY, SPEC, last, tail, checksum.compute(ChecksumType.CRC32C, 512, tail))
    footer = cache.get_range(KEY, KEY.num_bytes - 100, 100)  # a Parquet footer read
    assert footer is not None and footer.data.endswith(data[-100:])
    assert cache.get_range(KEY, 0, 10) is None
    assert cache.missing_segments(KEY, 0, KEY.num_bytes) == list(range(last))


def test_bad_checksums_are_never_stored(cache: BlockCache) -> None:
    seg = block_bytes(KEY)[:SEG]
    sums = bytearray(checksum.compute(ChecksumType.CRC32C, 512, seg))
    sums[17] ^= 1
    with pytest.raises(checksum.ChecksumError):
        cache.put_segment(KEY, SPEC, 0, seg, bytes(sums))
    corrupted = bytearray(seg)
    corrupted[1000] ^= 0x40
    with pytest.raises(checksum.ChecksumError):
        cache.put_segment(KEY, SPEC, 0, bytes(corrupted), bytes(checksum.compute(ChecksumType.CRC32C, 512, seg)))
    assert cache.stats.segments == 0 and cache.stats.rejected_segments == 2


def test_null_checksums_are_not_cached(cache: BlockCache) -> None:
    seg = block_bytes(KEY)[:SEG]
    assert not cache.put_segment(KEY, ChecksumSpec(ChecksumType.NULL, 512), 0, seg, b"")
    assert cache.stats.segments == 0


def test_identity_includes_genstamp_and_length(cache: BlockCache) -> None:
    put_all(cache, KEY)
    appended = BlockKey(KEY.pool_id, KEY.block_id, KEY.gen_stamp + 1, KEY.num_bytes + 10)
    shorter = BlockKey(KEY.pool_id, KEY.block_id, KEY.gen_stamp, KEY.num_bytes - 1)
    assert cache.get_range(appended, 0, 100) is None
    assert cache.get_range(shorter, 0, 100) is None


def test_wrong_segment_size_is_an_error(cache: BlockCache) -> None:
    with pytest.raises(BlockCacheError, match="must hold"):
        cache.put_segment(KEY, SPEC, 0, b"x" * 10, checksum.compute(ChecksumType.CRC32C, 512, b"x" * 10))
    with pytest.raises(BlockCacheError, match="outside block"):
        cache.get_range(KEY, KEY.num_bytes, 1)


def test_persistent_across_reopen(tmp_path: pathlib.Path) -> None:
    with BlockCache(tmp_path / "c", capacity_bytes=8 << 20, segment_bytes=SEG) as c:
        put_all(c, KEY)
    with BlockCache(tmp_path / "c", capacity_bytes=8 << 20, segment_bytes=SEG) as c:
        got = c.get_range(KEY, 0, KEY.num_bytes)
        assert got is not None and got.data == block_bytes(KEY)


def test_second_open_in_one_process_is_refused(cache: BlockCache) -> None:
    with pytest.raises(BlockCacheError, match="already open"):
        BlockCache(cache.path)


def test_corrupted_record_is_dropped_not_served(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "c"
    with BlockCache(path, capacity_bytes=8 << 20, segment_bytes=SEG) as c:
        put_all(c, KEY)
    # Flip one data byte inside a stored record, behind the cache's back.
    env = lmdb.open(str(path), max_dbs=4)
    segs = env.open_db(b"segments")
    with env.begin(write=True) as txn:
        k = KEY.encode() + (2).to_bytes(4, "big")
        rec = bytearray(txn.get(k, db=segs))
        rec[-5] ^= 0xFF
        txn.put(k, bytes(rec), db=segs)
    env.close()
    with BlockCache(path, capacity_bytes=8 << 20, segment_bytes=SEG) as c:
        assert c.get_range(KEY, 2 * SEG, 100) is None
        assert c.stats.corrupt_segments == 1
        assert c.get_range(KEY, 0, 100) is None  # the whole block went


def test_unreadable_store_is_moved_aside(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "c"
    path.mkdir()
    (path / "data.mdb").write_bytes(os.urandom(16384))
    with BlockCache(path, capacity_bytes=8 << 20, segment_bytes=SEG) as c:
        assert c.recovered_from is not None
        assert all(put_all(c, KEY))
    assert any(p.name.startswith("c.corrupt-") for p in tmp_path.iterdir())


def small_key(i: int) -> BlockKey:
    return BlockKey("BP-x", 2000 + i, 1, SEG)


def test_lru_eviction_when_frequency_allows(tmp_path: pathlib.Path) -> None:
    with BlockCache(tmp_path / "c", capacity_bytes=3 * (SEG + 512), segment_bytes=SEG) as c:
        for i in range(3):
            c.record_access(small_key(i))
            assert put_all(c, small_key(i)) == [True]
        # block 3 is wanted more than the least recently used (block 0)
        for _ in range(3):
            c.record_access(small_key(3))
        assert put_all(c, small_key(3)) == [True]
        assert c.get_range(small_key(0), 0, 1) is None
        assert c.stats.evicted_blocks == 1 and c.stats.used_bytes <= c.capacity_bytes


def test_cyclic_scan_larger_than_cache_keeps_a_stable_subset(tmp_path: pathlib.Path) -> None:
    # An iterative job re-reading 6 blocks through a 4-block cache: LRU would hit 0 times.
    keys = [small_key(i) for i in range(6)]
    with BlockCache(tmp_path / "c", capacity_bytes=4 * (SEG + 512), segment_bytes=SEG) as c:
        hits = 0
        for _iteration in range(5):
            for k in keys:
                if c.get_range(k, 0, SEG) is not None:
                    hits += 1
                else:
                    put_all(c, k)
        assert hits >= 4 * 4  # iterations 2..5 hit the 4 resident blocks


def test_pinned_blocks_go_last(tmp_path: pathlib.Path) -> None:
    with BlockCache(tmp_path / "c", capacity_bytes=2 * (SEG + 512), segment_bytes=SEG) as c:
        far = time.time() + 3600
        c.pin(small_key(0), far)
        put_all(c, small_key(0))
        put_all(c, small_key(1))
        for _ in range(5):
            c.record_access(small_key(2))
        assert put_all(c, small_key(2)) == [True]  # evicts the unpinned block 1
        assert c.covers(small_key(0), 0, SEG) and not c.covers(small_key(1), 0, SEG)
        # an unpinned newcomer can never displace a pinned block
        for _ in range(50):
            c.record_access(small_key(3))
        c.pin(small_key(2), far)
        assert put_all(c, small_key(3)) == [False]
        # a pinned newcomer displaces pinned blocks when nothing else is left
        c.pin(small_key(4), far)
        assert put_all(c, small_key(4)) == [True]


def test_capacity_never_exceeded(tmp_path: pathlib.Path) -> None:
    with BlockCache(tmp_path / "c", capacity_bytes=5 * (SEG + 512), segment_bytes=SEG) as c:
        for i in range(40):
            for _ in range(i % 4):
                c.record_access(small_key(i))
            put_all(c, small_key(i))
            assert c.stats.used_bytes <= c.capacity_bytes


WRITER = textwrap.dedent("""
    import sys
    from tests.test_blockcache import put_all, small_key
    from torswitch.blockcache import BlockCache
    cache = BlockCache(sys.argv[1], capacity_bytes=1 << 30, segment_bytes=65536)
    print("ready", flush=True)
    i = 0
    while True:
        put_all(cache, small_key(i))
        i += 1
""")


def test_kill_during_inserts_leaves_only_whole_segments(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "c"
    root = pathlib.Path(__file__).resolve().parent.parent
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                            cwd=root)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with BlockCache(path, capacity_bytes=1 << 30, segment_bytes=SEG) as c:
        blocks = c.list_blocks()
        assert len(blocks) > 3
        for info in blocks:
            got = c.get_range(info.key, 0, info.key.num_bytes)
            assert got is not None and got.data == block_bytes(info.key)
        assert c.stats.corrupt_segments == 0


def test_segment_assembler_cuts_whole_segments_only() -> None:
    from torswitch.blockcache import SegmentAssembler

    data = block_bytes(KEY)
    sums = checksum.compute(ChecksumType.CRC32C, 512, data)
    asm = SegmentAssembler(KEY, SPEC, SEG)
    start = SEG + 512  # inside segment 1: its head is dropped
    got = []
    for off in range(start, KEY.num_bytes, 70_000 - 70_000 % 512):
        n = min(70_000 - 70_000 % 512, KEY.num_bytes - off)
        got += asm.add(off, data[off:off + n], sums[off // 512 * 4:(off + n + 511) // 512 * 4])
    assert [i for i, _, _ in got] == [2, 3, 4, 5]  # the last one short, at the block end
    for index, seg_data, seg_sums in got:
        assert seg_data == data[index * SEG:(index + 1) * SEG]
        assert seg_sums == checksum.compute(ChecksumType.CRC32C, 512, seg_data)
    with pytest.raises(ValueError):
        asm.add(0, b"x" * 512, b"1234")  # not where the last run ended
