"""The rect letterbox on fixed-size engines: one engine per input shape bucket (``trtdet.engines.buckets``).

The dispatcher is checked with a recording source (which engine ran which batch, which were
compiled, activated, evicted); the torch backend's buckets on the CPU against Ultralytics'
recorded rect predictions (``families_detections.json``) and onnxruntime, which runs any shape.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from trtdet.contracts.engine import BaseEngine, ModelFile
from trtdet.engines.buckets import (
    DEFAULT_ACTIVE_BUCKETS,
    BucketEngine,
    Description,
    rect_bucket,
    wants_buckets,
)
from trtdet.plugins import get_model

DATA = Path(__file__).resolve().parents[2] / "data" / "ultralytics"


class SizeEngine(BaseEngine):
    """Answers each batch with its own input size; refuses any other size."""

    backend = "fake"

    def __init__(self, size, log, kind="compiled"):
        super().__init__("cpu")
        self.size, self.log, self.kind = size, log, kind
        self.input_name, self.input_shape = "images", (None, 3, *size)
        self.output_shapes, self.max_batch, self.metadata = {"out": ()}, 32, {"names": '["a"]'}

    def activate_impl(self):
        self.log.append(("activate", self.size))

    def deactivate_impl(self):
        self.log.append(("deactivate", self.size))

    def infer_impl(self, batch):
        assert tuple(batch.shape[-2:]) == self.size
        return {"out": np.array([self.size, self.kind], dtype=object)}


@dataclasses.dataclass
class Source:
    built: set
    log: list = dataclasses.field(default_factory=list)
    backend: str = "fake"

    def engine(self, size):
        self.log.append(("make", size))
        self.built.add(size)
        return SizeEngine(size, self.log)

    def is_built(self, size):
        return size in self.built

    def fallback(self, size):
        self.log.append(("fallback", size))
        return SizeEngine(size, self.log, kind="fallback")

    def describe(self):
        return Description(("out",), {"names": '["a"]'}, 32)


def run(engine, h, w):
    return tuple(engine(np.zeros((2, 3, h, w), np.float32))["out"])


def test_each_batch_runs_on_the_engine_of_its_shape():
    said = []
    source = Source(built={(640, 640)})
    engine = BucketEngine(source, (640, 640), "cpu", announce=said.append)
    with engine:
        assert engine.input_shape == (None, 3, None, None)  # the detector keeps rect
        assert engine.metadata == {"names": '["a"]'} and engine.max_batch == 32 and engine.backend == "fake"
        assert engine.output_shapes == {"out": ()}
        assert source.log == []  # activation makes no engine: a prebuilt deployment never compiles
        assert run(engine, 384, 640) == ((384, 640), "compiled")
        assert run(engine, 640, 640) == ((640, 640), "compiled")
        assert run(engine, 384, 640) == ((384, 640), "compiled")
    # 384x640 was compiled once (said once), then reused; 640x640 came from the cache
    assert [e for e in source.log if e[0] == "make"] == [("make", (384, 640)), ("make", (640, 640))]
    assert len(said) == 1 and "384x640" in said[0] and "trtdet build --backend fake --input-size 384 640" in said[0]
    assert engine.active == {} and ("deactivate", (384, 640)) in source.log


def test_at_most_keep_engines_stay_active_least_recently_used_out_first():
    source = Source(built={(640, 640), (384, 640), (480, 640), (640, 480)})
    engine = BucketEngine(source, (640, 640), "cpu", keep=2)
    with engine:
        run(engine, 640, 640)
        run(engine, 384, 640)  # active: 640, 384
        run(engine, 640, 640)  # 640 most recent
        run(engine, 480, 640)  # evicts 384 (least recent), not 640
        assert list(engine.active) == [(640, 640), (480, 640)]
        assert ("deactivate", (384, 640)) in source.log and ("deactivate", (640, 640)) not in source.log
        run(engine, 384, 640)  # comes back from the cache: made again, evicting 640
        assert list(engine.active) == [(480, 640), (384, 640)]
    assert DEFAULT_ACTIVE_BUCKETS == 4
    with pytest.raises(ValueError, match="keep"):
        BucketEngine(source, (640, 640), "cpu", keep=0)


def test_after_the_compile_budget_uncached_buckets_run_on_the_fallback():
    said = []
    source = Source(built={(640, 640)})
    engine = BucketEngine(source, (640, 640), "cpu", compile_budget=1, announce=said.append)
    with engine:
        assert run(engine, 384, 640) == ((384, 640), "compiled")
        assert run(engine, 480, 640) == ((480, 640), "fallback")
        assert run(engine, 480, 640) == ((480, 640), "fallback")  # stays active: said once
        assert run(engine, 384, 640) == ((384, 640), "compiled")  # a cached bucket needs no budget
    assert engine.fell_back == {(480, 640)}
    assert len(said) == 2 and "480x640" in said[1] and "runs uncompiled" in said[1]


@pytest.mark.parametrize(("image", "bucket"), [((1080, 1920), (384, 640)), ((720, 1280), (384, 640)),
                                                ((1920, 1080), (640, 384)), ((480, 640), (480, 640)),
                                                ((100, 1000), (64, 640)), ((640, 640), (640, 640))])
def test_rect_bucket_is_the_stride_padded_letterbox_shape(image, bucket):
    # hand-computed: long side to 640, the short side scaled (1080 * 640 / 1920 = 360) and padded up to a multiple of 32
    assert rect_bucket(image, (640, 640)) == bucket


def test_buckets_apply_to_dynamic_onnx_under_rect_only():
    spec = get_model("yolo").spec
    rect, square = dataclasses.replace(spec, letterbox="rect"), dataclasses.replace(spec, letterbox="ultralytics")
    assert wants_buckets(rect, ModelFile(DATA / "yolo11_dynamic.onnx", "onnx"))
    assert not wants_buckets(square, ModelFile(DATA / "yolo11_dynamic.onnx", "onnx"))
    assert not wants_buckets(rect, ModelFile(DATA / "yolo11_static.onnx", "onnx"))  # fixed size: square, as Ultralytics
    assert not wants_buckets(rect, ModelFile(DATA / "yolo11_dynamic.onnx", "weights"))


@pytest.mark.slow
def test_the_torch_backend_runs_rect_like_ultralytics(tmp_path):
    """The shipped YOLO11n converted per bucket gives ``yolo predict``'s default (rect) detections."""
    from tests.trtdet_yolo.test_ultralytics_families import FAMILIES, assert_parity, run_trtdet
    from tests.trtdet_yolo.ultralytics_cases import make_cases

    files = make_cases(tmp_path)
    cases = FAMILIES["yolo11n_rect"]["cases"]
    assert any(c["input_shape"] != [640, 640] for c in cases.values())
    assert_parity(run_trtdet("yolo11n_rect", files, "--backend", "torch"), cases)


def test_a_1080p_stream_runs_at_384x640_on_the_torch_backend():
    """Same detections as onnxruntime (which takes any shape) on a 16:9 frame, from a 384x640 network."""
    import cv2

    import trtdet
    from tests.trtdet_yolo.ultralytics_cases import source_path

    photo = cv2.imread(str(source_path("astronaut.png")), cv2.IMREAD_COLOR)
    frame = cv2.resize(photo, (1920, 1080), interpolation=cv2.INTER_LINEAR)
    with trtdet.load("yolo", backend="torch", batch=2) as ours, trtdet.load("yolo", backend="onnxruntime", batch=2) as ort:
        assert ours.spec.letterbox == "rect" and isinstance(ours.engine, BucketEngine)
        got, want = ours([frame, frame]), ort([frame, frame])
        assert (384, 640) in ours.engine.active
    assert len(want[0]) >= 1
    for g, w in zip(got, want, strict=True):
        assert np.array_equal(g.class_id, w.class_id)
        assert np.abs(g.xyxy - w.xyxy).max() <= 0.05 and np.abs(g.confidence - w.confidence).max() <= 1e-4


@pytest.mark.slow
def test_a_prebuilt_bucket_is_loaded_not_compiled(tmp_path, monkeypatch):
    """`trtdet build --input-size H W` (an inductor CPU package here) makes the bucket a rect run
    then loads from the cache: no compile announced, the bucket's engine is the package, and its
    outputs equal onnxruntime's on the same letterboxed batch."""
    import onnxruntime as ort
    from click.testing import CliRunner

    import trtdet
    from trtdet.cli.main import cli
    from trtdet.engines.inductor.runtime import InductorEngine

    monkeypatch.setenv("TRTDET_CACHE_DIR", str(tmp_path / "cache"))
    onnx = DATA / "yolo11_dynamic.onnx"
    bucket = rect_bucket((1080, 1920), (160, 160))
    assert bucket == (96, 160)  # 1080 * 160 / 1920 = 90, padded up to 96
    built = CliRunner().invoke(cli, ["build", "--backend", "inductor", "--device", "cpu", "--model", "yolo", str(onnx),
                                     "--input-size", "96", "160", "-o", str(tmp_path / "b.pt2"), "--quiet"])
    assert built.exit_code == 0, built.output
    said = []
    with trtdet.load("yolo", onnx=str(onnx), backend="inductor", device="cpu", input_size=(160, 160)) as detector:
        assert isinstance(detector.engine, BucketEngine) and detector.engine.active == {}  # nothing compiled on load
        detector.engine.announce = said.append
        frame = np.random.default_rng(0).integers(0, 255, (1080, 1920, 3), dtype=np.uint8)
        batch = detector.preprocessor([frame]).tensor
        assert tuple(batch.shape) == (1, 3, 96, 160)
        got = next(iter(detector.engine(batch).values()))
        assert isinstance(detector.engine.active[bucket], InductorEngine) and said == []
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    want = session.run(None, {session.get_inputs()[0].name: np.asarray(batch)})[0]
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_an_evicted_bucket_drops_the_pipeline_graphs_that_recorded_its_engine():
    """A whole-pipeline CUDA graph records a bucket's engine; when the LRU evicts that engine, the
    graphs of its input size go first (a replay would run freed memory), others stay."""
    from types import SimpleNamespace

    from trtdet.cuda.pipeline_graph import PipelineGraphs

    class Engine:
        backend = "stand-in"

        def __init__(self, size):
            self.size, self.active = size, False

        def activate(self):
            self.active = True

        def deactivate(self):
            self.active = False

        def ungraphed_call(self, batch):
            return {"size": self.size}

    class Source:
        backend, cuda_graphs = "stand-in", True

        def engine(self, size):
            return Engine(size)

        def is_built(self, size):
            return True

        def fallback(self, size):
            raise AssertionError("not reached")

    buckets = BucketEngine(Source(), (640, 640), "cpu", keep=1)
    assert buckets.cuda_graphs
    graphs = PipelineGraphs.__new__(PipelineGraphs)  # only its cache is used here
    from trtdet.lru import LRU

    released = []
    graphs.cache = LRU(8)
    for key, size in (("a", (384, 640)), ("b", (480, 640)), ("c", (384, 640))):
        graphs.cache.put(key, SimpleNamespace(input=np.zeros((1, 3, *size)), release=lambda key=key: released.append(key)))
    buckets.eviction_listeners.append(graphs.drop_input_size)
    assert buckets.ungraphed_call(np.zeros((1, 3, 384, 640))) == {"size": (384, 640)}
    first = buckets.active[(384, 640)]
    assert buckets.ungraphed_call(np.zeros((1, 3, 480, 640))) == {"size": (480, 640)}  # evicts 384x640
    assert not first.active and sorted(released) == ["a", "c"] and graphs.cache.keys() == ["b"]
