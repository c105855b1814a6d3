"""--classes on a queuing (GPU launch-ahead) decoder: the filter stays on the queued path."""

from __future__ import annotations

import numpy as np

from trtdet.detections import Detections
from trtdet.postprocess.decoder import QueuingDecoder
from trtdet.postprocess.filter import ClassFilter, QueuingClassFilter, class_filter
from trtdet.postprocess.host import HostDecoder


def _detections() -> Detections:
    xyxy = np.array([[0, 0, 10, 10], [5, 5, 20, 20], [1, 1, 3, 3]], np.float32)
    return Detections(xyxy, np.array([0.9, 0.8, 0.7], np.float32), np.array([0, 2, 0]))


class PlainDecoder:
    def validate(self, output_shapes, source):
        pass

    def __call__(self, outputs, transforms):
        return [_detections()]


class Queuing(PlainDecoder):
    def queue(self, outputs, transforms):
        return "handle"

    def collect(self, queued):
        assert queued == "handle"
        return [_detections()]


def test_filter_of_a_queuing_decoder_queues_and_filters_what_it_collects():
    wrapped = class_filter(Queuing(), [0])
    assert isinstance(wrapped, QueuingClassFilter) and isinstance(wrapped, QueuingDecoder)
    (kept,) = wrapped.collect(wrapped.queue({}, []))
    assert kept.class_id.tolist() == [0, 0]  # class 2 dropped, as the direct call drops it
    assert wrapped({}, [])[0].class_id.tolist() == [0, 0]


def test_wrappers_of_plain_decoders_do_not_look_queuing():
    wrapped = class_filter(PlainDecoder(), [2])
    assert type(wrapped) is ClassFilter and not isinstance(wrapped, QueuingDecoder)
    assert not isinstance(ClassFilter(Queuing(), [0]), QueuingDecoder)  # never borrows an unfiltered queue
    assert not isinstance(HostDecoder(Queuing()), QueuingDecoder)  # host decoding never queues on the GPU
    assert wrapped({}, [])[0].class_id.tolist() == [2]
