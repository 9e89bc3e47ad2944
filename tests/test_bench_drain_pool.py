"""The FC instance pool model of tools.bench_drain (issue 16's billed instance-seconds)."""

from __future__ import annotations

from tools.bench_drain import fc_pool


def test_concurrency_1_bills_every_invocation_and_reuses_a_freed_instance() -> None:
    """GIVEN three overlapping invocations and a fourth after the first ended WHEN C = 1 THEN
    three instances, the fourth on the freed one, billed the sum of the invocations."""
    pool = fc_pool([(0.0, 10.0), (1.0, 11.0), (2.0, 12.0), (10.0, 13.0)], 1)
    assert pool == {"concurrency": 1, "invocations": 4, "instances_started": 3,
                    "peak_instances": 3, "peak_invocations": 3, "billed_instance_s": 33.0,
                    "invocation_s": 33.0}


def test_concurrency_bills_the_union_of_an_instance_busy_time() -> None:
    """GIVEN the same invocations WHEN C = 2 THEN two instances: the first busy 0-11 and
    10-13 (union 13 s), the second 2-12 (10 s): 23 s billed, two busy at the peak."""
    pool = fc_pool([(0.0, 10.0), (1.0, 11.0), (2.0, 12.0), (10.0, 13.0)], 2)
    assert pool == {"concurrency": 2, "invocations": 4, "instances_started": 2,
                    "peak_instances": 2, "peak_invocations": 3, "billed_instance_s": 23.0,
                    "invocation_s": 33.0}


def test_two_hundred_sleeping_notices_on_one_instance_of_concurrency_200() -> None:
    """GIVEN 200 invocations of 60 s at once WHEN C = 1 THEN 200 instances, 12,000 s; WHEN
    C = 100 THEN 2 instances, 120 s."""
    burst = [(0.0, 60.0)] * 200
    assert (fc_pool(burst, 1)["peak_instances"], fc_pool(burst, 1)["billed_instance_s"]) == (200, 12000.0)
    assert (fc_pool(burst, 100)["peak_instances"], fc_pool(burst, 100)["billed_instance_s"]) == (2, 120.0)
