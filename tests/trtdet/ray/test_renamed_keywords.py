"""``build_app(batch=)`` is the one name for the serve batch; ``max_batch=`` still works, with a DeprecationWarning."""

from __future__ import annotations

import pytest

from trtdet.errors import UsageError
from trtdet.options import DetectorOptions


@pytest.fixture
def deployments(monkeypatch):
    """Records what each ``serve.deployment(...).bind(...)`` was given, without deploying anything."""
    import trtdet.ray.serve as module

    made = []

    class Bound:
        def __init__(self, target, kwargs):
            self.target, self.kwargs, self.args = target, kwargs, None

        def bind(self, *args):
            self.args = args
            return self

    def deployment(target, **kwargs):
        made.append(Bound(target, kwargs))
        return made[-1]

    monkeypatch.setattr(module.serve, "deployment", deployment)
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # no cluster to check the resources against
    return made


def _replica(made):
    return next(d for d in made if d.kwargs.get("name") == "Detector")


@pytest.mark.parametrize(("keywords", "expected"), [({}, 32), ({"batch": 6}, 6)])
def test_batch_reaches_the_replicas(deployments, keywords, expected):
    from trtdet.ray.serve import build_app

    build_app("yolo", DetectorOptions(device="cpu"), **keywords)
    replica = _replica(deployments)
    assert replica.args[2] == expected and replica.kwargs["max_ongoing_requests"] == max(2 * expected, 8)
    assert replica.args[1]["batch"] == expected  # the detector's own batch covers it


def test_max_batch_is_the_old_name(deployments):
    from trtdet.ray.serve import build_app

    with pytest.warns(DeprecationWarning, match="max_batch is deprecated: it was renamed batch"):
        build_app("yolo", DetectorOptions(device="cpu"), max_batch=5)
    assert _replica(deployments).args[2] == 5
    with pytest.raises(UsageError, match=r"^give batch or max_batch \(its old name\), not both$"):
        build_app("yolo", DetectorOptions(device="cpu"), batch=4, max_batch=5)
