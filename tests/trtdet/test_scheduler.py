"""The scheduler on its own: batch forming, order, pass-through items, overlap order, the failure policy."""

from __future__ import annotations

import pytest

from trtdet.scheduler import Scheduler

from .test_batching import FakeGpuPhases


class Plain:
    """``run_batch`` of ints: ``10 * x``; a batch holding a negative item fails; records batches."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __call__(self, items):
        self.batches.append(list(items))
        if any(x < 0 for x in items):
            raise ValueError(f"bad item in {items}")
        return [10 * x for x in items]


def _run(scheduler: Scheduler, items, runs=None):
    outcomes = []
    with scheduler:
        for i, item in enumerate(items):
            outcomes += scheduler.add(item, tag=i, run=True if runs is None else runs[i])
        outcomes += scheduler.drain()
    return outcomes


def test_batches_of_max_batch_in_order():
    plain = Plain()
    outcomes = _run(Scheduler(plain, max_batch=3), range(8))
    assert plain.batches == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert [o.tag for o in outcomes] == list(range(8))
    assert [o.result for o in outcomes] == [10 * x for x in range(8)]
    assert all(o.error is None for o in outcomes)


def test_items_of_different_keys_never_share_a_batch():
    """The rect letterbox keys images by shape: a change of key cuts the batch; results stay in order."""
    plain = Plain()
    items = [1, 3, 5, 2, 4, 7, 9, 11, 13, 6]  # key: odd or even
    outcomes = _run(Scheduler(plain, max_batch=3, batch_key=lambda x: x % 2), items)
    assert plain.batches == [[1, 3, 5], [2, 4], [7, 9, 11], [13], [6]]
    assert [o.tag for o in outcomes] == list(range(len(items)))
    assert [o.result for o in outcomes] == [10 * x for x in items]


def test_items_that_do_not_run_travel_in_order_and_do_not_count():
    plain = Plain()
    runs = [False, True, False, True, True, False, False]
    outcomes = _run(Scheduler(plain, max_batch=2), [None, 1, None, 3, 4, None, None], runs)
    assert plain.batches == [[1, 3], [4]]
    assert [o.tag for o in outcomes] == list(range(7))
    assert [o.result for o in outcomes] == [None, 10, None, 30, 40, None, None]


def test_a_failed_batch_is_rerun_one_by_one():
    plain = Plain()
    outcomes = _run(Scheduler(plain, max_batch=4), [1, 2, -3, 4, 5])
    assert plain.batches == [[1, 2, -3, 4], [1], [2], [-3], [4], [5]]
    assert [o.result for o in outcomes] == [10, 20, None, 40, 50]
    assert isinstance(outcomes[2].error, ValueError)
    assert [o.error is None for o in outcomes] == [True, True, False, True, True]


def test_a_failed_batch_of_one_is_not_rerun():
    plain = Plain()
    outcomes = _run(Scheduler(plain, max_batch=1), [-1, 2])
    assert plain.batches == [[-1], [2]]
    assert isinstance(outcomes[0].error, ValueError) and outcomes[1].result == 20


def test_cut_sends_a_partial_batch_now():
    plain = Plain()
    scheduler = Scheduler(plain, max_batch=8)
    assert scheduler.add(1, "a") == [] and scheduler.pending == 1
    (outcome,) = scheduler.cut()
    assert (outcome.tag, outcome.result) == ("a", 10) and plain.batches == [[1]]
    assert scheduler.drain() == []


def test_overlapped_order_is_launch_stage_finish():
    fake = FakeGpuPhases()
    outcomes = _run(Scheduler(fake.run_batch, max_batch=2, phases=fake.phases()), range(6))
    assert [o.result for o in outcomes] == [10 * x for x in range(6)]
    assert fake.events == [
        ("stage", (0, 1)), ("launch", (0, 1)),
        ("stage", (2, 3)), ("finish", (0, 1)), ("launch", (2, 3)),
        ("stage", (4, 5)), ("finish", (2, 3)), ("launch", (4, 5)),
        ("finish", (4, 5)),
    ]  # fmt: skip
    assert not fake.lock.locked()  # the session is released once nothing is in flight


def test_overlapped_results_come_back_one_batch_late_and_the_session_is_held_meanwhile():
    fake = FakeGpuPhases()
    scheduler = Scheduler(fake.run_batch, max_batch=2, phases=fake.phases())
    assert scheduler.add(1, "a") == [] and scheduler.add(2, "b") == []  # launched, in flight
    assert scheduler.in_flight and fake.lock.locked()
    assert [o.tag for o in scheduler.add(3, "c") + scheduler.add(4, "d")] == ["a", "b"]
    assert [o.tag for o in scheduler.drain()] == ["c", "d"]
    assert not scheduler.in_flight and not fake.lock.locked()


@pytest.mark.parametrize("bad", [-1, 13], ids=["stage-fails", "finish-fails"])
def test_overlapped_failure_reruns_outside_the_session(bad):
    fake = FakeGpuPhases()
    items = [1, 2, bad, 4, 5, 6, 7]
    outcomes = _run(Scheduler(fake.run_batch, max_batch=2, phases=fake.phases()), items)
    assert [o.tag for o in outcomes] == list(range(len(items)))
    for x, outcome in zip(items, outcomes, strict=True):
        if x < 0:
            assert isinstance(outcome.error, ValueError)
        else:
            assert outcome.error is None and outcome.result == 10 * x  # 13 decodes fine alone
    assert not fake.lock.locked()


def test_an_uncaught_error_releases_the_pipeline():
    fake = FakeGpuPhases()
    scheduler = Scheduler(fake.run_batch, max_batch=1, phases=fake.phases(), catch=(ValueError,))
    scheduler.add(13, "x")  # in flight: its finish raises RuntimeError, which is not caught
    with pytest.raises(RuntimeError, match="decode failed"):
        scheduler.drain()
    assert not fake.lock.locked() and not scheduler.in_flight


def test_max_batch_must_be_positive():
    with pytest.raises(ValueError, match="max_batch"):
        Scheduler(Plain(), max_batch=0)


def test_a_batch_starting_idle_runs_as_two_overlapped_halves():
    fake = FakeGpuPhases()
    scheduler = Scheduler(fake.run_batch, max_batch=4, phases=fake.phases(), split_when_idle=2)
    outcomes = _run(scheduler, range(12))
    assert [o.result for o in outcomes] == [10 * x for x in range(12)]
    # Only the first batch starts idle; later ones overlap the batch in flight and stay whole.
    assert fake.events == [
        ("stage", (0, 1)), ("launch", (0, 1)),
        ("stage", (2, 3)), ("finish", (0, 1)), ("launch", (2, 3)),
        ("stage", (4, 5, 6, 7)), ("finish", (2, 3)), ("launch", (4, 5, 6, 7)),
        ("stage", (8, 9, 10, 11)), ("finish", (4, 5, 6, 7)), ("launch", (8, 9, 10, 11)),
        ("finish", (8, 9, 10, 11)),
    ]  # fmt: skip
    assert not fake.lock.locked()


def test_an_idle_split_keeps_items_that_do_not_run_in_order_and_small_batches_whole():
    fake = FakeGpuPhases()
    runs = [True, False, True, True, False, True, True]
    scheduler = Scheduler(fake.run_batch, max_batch=8, phases=fake.phases(), split_when_idle=2)
    outcomes = _run(scheduler, [1, None, 2, 3, None, 4, 5], runs)
    assert [o.tag for o in outcomes] == list(range(7))
    assert [o.result for o in outcomes] == [10, None, 20, 30, None, 40, 50]
    assert [e for e in fake.events if e[0] == "launch"] == [("launch", (1, 2, 3)), ("launch", (4, 5))]
    fake = FakeGpuPhases()
    _run(Scheduler(fake.run_batch, max_batch=8, phases=fake.phases(), split_when_idle=4), range(7))
    assert [e for e in fake.events if e[0] == "launch"] == [("launch", tuple(range(7)))]  # 7 < 2 x 4


def test_a_failing_half_fails_only_its_bad_item():
    fake = FakeGpuPhases()
    items = [1, -2, 3, 4, 5, 6]
    outcomes = _run(Scheduler(fake.run_batch, max_batch=6, phases=fake.phases(), split_when_idle=2), items)
    assert [o.result for o in outcomes] == [10, None, 30, 40, 50, 60]
    assert isinstance(outcomes[1].error, ValueError)
    assert not fake.lock.locked()


def test_launch_ahead_keeps_two_batches_launched():
    fake = FakeGpuPhases(launch_ahead=True)
    outcomes = _run(Scheduler(fake.run_batch, max_batch=2, phases=fake.phases()), range(8))
    assert [o.result for o in outcomes] == [10 * x for x in range(8)]
    # Batch k+2 is staged (its upload starts) while k and k+1 are both on the GPU.
    assert fake.events == [
        ("stage", (0, 1)), ("launch", (0, 1)),
        ("stage", (2, 3)), ("launch", (2, 3)),
        ("stage", (4, 5)), ("finish", (0, 1)), ("launch", (4, 5)),
        ("stage", (6, 7)), ("finish", (2, 3)), ("launch", (6, 7)),
        ("finish", (4, 5)), ("finish", (6, 7)),
    ]  # fmt: skip
    assert not fake.lock.locked()


@pytest.mark.parametrize("bad", [-1, 13], ids=["stage-fails", "finish-fails"])
@pytest.mark.parametrize("split", [0, 2], ids=["whole", "idle-split"])
def test_launch_ahead_failures_rerun_only_the_bad_items(bad, split):
    fake = FakeGpuPhases(launch_ahead=True)
    items = [1, 2, bad, 4, 5, 6, 7, 13 if bad == 13 else 8, 9]
    scheduler = Scheduler(fake.run_batch, max_batch=2, phases=fake.phases(), split_when_idle=split)
    outcomes = _run(scheduler, items)
    assert [o.tag for o in outcomes] == list(range(len(items)))
    for x, outcome in zip(items, outcomes, strict=True):
        if x < 0:
            assert isinstance(outcome.error, ValueError)
        else:
            assert outcome.error is None and outcome.result == 10 * x  # 13 decodes fine alone
    assert not fake.lock.locked()


def test_launch_ahead_when_the_batch_behind_a_failed_one_fails_too():
    fake = FakeGpuPhases(launch_ahead=True)
    outcomes = _run(Scheduler(fake.run_batch, max_batch=2, phases=fake.phases()), [13, 1, 13, 2, 3])
    assert [o.result for o in outcomes] == [130, 10, 130, 20, 30]  # each decodes fine alone
    assert all(o.error is None for o in outcomes) and not fake.lock.locked()


def test_finish_oldest_collects_one_batch_and_keeps_the_next_launched():
    fake = FakeGpuPhases(launch_ahead=True)
    scheduler = Scheduler(fake.run_batch, max_batch=2, phases=fake.phases())
    for x in (1, 2, 3, 4):
        assert scheduler.add(x, tag=x) == []  # two batches launched, none finished
    assert [(o.tag, o.result) for o in scheduler.finish_oldest()] == [(1, 10), (2, 20)]
    assert fake.launched == [(3, 4)] and fake.lock.locked()  # the next one still runs, the session held
    assert [(o.tag, o.result) for o in scheduler.finish_oldest()] == [(3, 30), (4, 40)]
    assert not scheduler.in_flight and not fake.lock.locked()  # nothing in flight: released
    assert scheduler.finish_oldest() == []


def test_finish_oldest_of_a_failing_batch_reruns_its_items_and_finishes_the_rest():
    fake = FakeGpuPhases(launch_ahead=True)
    scheduler = Scheduler(fake.run_batch, max_batch=2, phases=fake.phases())
    for x in (13, 1, 2, 3):
        scheduler.add(x, tag=x)
    outcomes = scheduler.finish_oldest()
    assert [(o.tag, o.result, o.error) for o in outcomes] == [(13, 130, None), (1, 10, None), (2, 20, None), (3, 30, None)]
    assert not scheduler.in_flight and not fake.lock.locked()
