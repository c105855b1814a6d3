"""The steps a whole-pipeline graph holds, run directly under the simulator (no capture here).

Reference: the ordinary path -- ``preprocessor(images)`` (its own staging), the same network,
``decoder(outputs, transforms)`` -- on the same images; and ``staging_layout`` against the
metadata ``stage`` writes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trtdet.cuda import SIMULATOR
from trtdet.cuda.pipeline_graph import PipelineGraphs
from trtdet.preprocess.cuda import META_COLUMNS, CudaWarpAffinePreprocessor, staging_layout
from trtdet_centernet.cuda_decode import CudaCenterNetDecoder
from trtdet_yolo.cuda_decode import CudaYoloDecoder

from ..checks import random_images

pytestmark = pytest.mark.skipif(not SIMULATOR, reason="simulator-only module")

SIZE = (16, 16)


def _yolo_network(x):
    """A v8 head over a 4x4 grid whose boxes and two class scores follow the input's pixels."""
    g = torch.nn.functional.avg_pool2d(x.float(), 4).reshape(x.shape[0], 3, 16)
    ys, xs = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    cx = (xs.reshape(1, 1, 16) * 4 + 2).expand(x.shape[0], 1, 16)
    cy = (ys.reshape(1, 1, 16) * 4 + 2).expand(x.shape[0], 1, 16)
    wh = 3 + 6 * g[:, :2].abs()
    scores = torch.sigmoid((g[:, 1:3] - 0.4) * 8)
    return {"output0": torch.cat([cx, cy, wh, scores], 1).contiguous()}


def _centernet_network(x):
    """CenterNet's fused ``[B, 16, 4 + 2C]`` output (C = 2) at stride 4, from the input's pixels."""
    g = torch.nn.functional.avg_pool2d(x.float(), 4).reshape(x.shape[0], 3, 16).permute(0, 2, 1)
    hm = (g[:, :, 1:3] - 0.3) * 6
    pool = torch.nn.functional.max_pool2d(hm.permute(0, 2, 1).reshape(-1, 2, 4, 4), 3, 1, 1).reshape(-1, 2, 16)
    return {"output": torch.cat([g[:, :, :2] * 0.5, 2 + 4 * g[:, :, 1:3].abs(), hm, pool.permute(0, 2, 1)], 2).contiguous()}


def _end_to_end_network(x):
    """An end-to-end head ``[B, 8, 6]`` (x1, y1, x2, y2, score, class) from the input's pixels."""
    g = torch.nn.functional.avg_pool2d(x.float(), 4).reshape(x.shape[0], 3, 16)[:, :, :8]
    centre = torch.arange(8.0).reshape(1, 8) * 2 + 1
    half = 1 + 4 * g[:, 0].abs()
    score = torch.sigmoid((g[:, 1] - 0.4) * 8)
    klass = (torch.arange(8) % 3).float().expand(x.shape[0], 8)
    rows = [centre - half, centre - half / 2, centre + half, centre + half / 2, score, klass]
    return {"output0": torch.stack(rows, 2).contiguous()}


CASES = {
    "yolo": (dict(channel_order="RGB", border_value=114), _yolo_network, lambda: CudaYoloDecoder(2, 0.25, 0.7, 300)),
    "yolo-end-to-end": (dict(channel_order="RGB", border_value=114), _end_to_end_network,
                        lambda: CudaYoloDecoder(3, 0.25, 0.7, 300)),
    "centernet": (
        dict(mean=(0.4, 0.45, 0.47), std=(0.29, 0.27, 0.28), channel_order="BGR", border_value=0),
        _centernet_network,
        lambda: CudaCenterNetDecoder(2, SIZE, k=5, threshold=0.3),
    ),
}


@pytest.mark.parametrize("model", sorted(CASES))
@pytest.mark.parametrize("shapes", [[(20, 30)], [(20, 30), (9, 14), (33, 17)]], ids=["batch1", "batch3-mixed"])
def test_the_graphs_steps_give_the_ordinary_paths_detections(model, shapes):
    options, network, make_decoder = CASES[model]
    images = random_images(np.random.default_rng(len(shapes)), shapes)
    preprocessor = CudaWarpAffinePreprocessor(SIZE, **options)
    decoder = make_decoder()
    batch = preprocessor(images)
    want = decoder(network(batch.tensor), batch.transforms)
    assert sum(len(d) for d in want) > 0, "a comparison on no detections proves little"
    graphs = PipelineGraphs(preprocessor, network, make_decoder())
    got = graphs.direct_detections(images)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g.xyxy, w.xyxy)
        np.testing.assert_array_equal(g.confidence, w.confidence)
        np.testing.assert_array_equal(g.class_id, w.class_id)


def test_the_staging_layout_is_what_stage_writes():
    images = random_images(np.random.default_rng(9), [(20, 30), (9, 14), (1, 1)])
    for letterbox in ("warp", "square"):
        preprocessor = CudaWarpAffinePreprocessor(SIZE, letterbox=letterbox)
        staged = preprocessor.stage(images)
        written = staged.slot.host[: staged.meta_bytes].view(torch.float64)[: len(images) * META_COLUMNS]
        meta, offsets, meta_bytes = staging_layout([image.shape for image in images], staged.transforms)
        assert meta_bytes == staged.meta_bytes and offsets == [0, 20 * 30 * 3, 20 * 30 * 3 + 9 * 14 * 3]
        np.testing.assert_array_equal(written.numpy().reshape(meta.shape), meta)
        preprocessor.discard_staged()
