"""Sizing workers to the cluster: defaults that run on a 2-CPU machine, refusals only for what cannot be placed."""

from __future__ import annotations

import pytest

from trtdet.errors import UsageError
from trtdet.ray.batch import plan_cpus
from trtdet.ray.cluster import share_cpus
from trtdet.ray.serve import INGRESS_CPUS, is_loopback


def test_two_replicas_share_a_two_cpu_machine_with_the_ingress():
    each = share_cpus(2, 2, None, INGRESS_CPUS, "replicas", "--cpus-per-replica", "the HTTP ingress")
    assert each == pytest.approx(0.95) and 2 * each + INGRESS_CPUS <= 2
    assert share_cpus(16, 2, None, INGRESS_CPUS, "replicas", "--cpus-per-replica", "the HTTP ingress") == 1.0
    assert share_cpus(2, 1, 1.5, INGRESS_CPUS, "replicas", "--cpus-per-replica", "the HTTP ingress") == 1.5


def test_replicas_asking_for_more_cpus_than_the_cluster_has_are_one_line():
    with pytest.raises(UsageError) as caught:
        share_cpus(2, 2, 1.0, INGRESS_CPUS, "replicas", "--cpus-per-replica", "the HTTP ingress")
    assert str(caught.value) == (
        "2 replicas x 1 CPUs and 0.1 CPUs for the HTTP ingress need 2.1 CPUs; the Ray cluster has 2: "
        "lower --cpus-per-replica (or leave it out to share the CPUs)"
    )


@pytest.mark.parametrize("total, workers", [(2, 1), (2, 2), (2, 8), (4, 3), (16, 4)])
def test_batch_default_cpus_fit_the_cluster_with_reading_left_room(total, workers):
    per_worker, reading = plan_cpus(total, workers, None)
    assert 0 < per_worker <= 1 and 0 < reading <= 1
    assert workers * per_worker + reading <= total + 1e-9  # the pool and one reading task both run
    if total >= workers + 1:
        assert per_worker == reading == 1.0  # large enough: one whole CPU each, as before


def test_batch_refuses_only_what_leaves_nothing_for_reading():
    assert plan_cpus(2, 2, 0.9) == (0.9, pytest.approx(0.2))
    with pytest.raises(UsageError, match="2 workers x 1 CPUs leave none of the cluster's 2 CPUs for reading images"):
        plan_cpus(2, 2, 1.0)


def test_loopback_addresses():
    assert all(map(is_loopback, ["127.0.0.1", "127.0.1.1", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.0.2.2", "example.org"]))
