"""The publisher picks each record's partition itself (once per key); it must be the
partition aiokafka's default partitioner (Kafka's murmur2) would pick, or a parcel's
records would be split between partitions and lose their order."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as reference_murmur2
from hypothesis import given
from hypothesis import strategies as st

from services.ingest.publisher import key_partition, murmur2


@given(st.binary(max_size=200))
def test_murmur2_is_kafkas(key: bytes) -> None:
    assert murmur2(key) == reference_murmur2(key)


@given(st.binary(min_size=1, max_size=64), st.integers(min_value=1, max_value=64))
def test_key_partition_is_the_default_partitioners(key: bytes, count: int) -> None:
    partitions = list(range(count))
    assert key_partition(key, partitions) == DefaultPartitioner()(key, partitions, partitions)


@pytest.mark.parametrize(
    ("key", "java_value"),
    [
        ("21", -973932308),
        ("foobar", -790332482),
        ("a-little-bit-long-string", -985981536),
        ("a-little-bit-longer-string", -1486304829),
        ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        ("abc", 479470107),
    ],
)
def test_the_java_clients_values(key: str, java_value: int) -> None:
    # Kafka's UtilsTest.testMurmur2 (a signed int there).
    assert murmur2(key.encode()) == java_value & 0xFFFFFFFF
