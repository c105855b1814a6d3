"""Post-processing shared by model plugins: class-aware NMS, and host decoding on a CUDA pipeline."""

from trtdet.postprocess.host import HostDecoder
from trtdet.postprocess.nms import box_iou_one_to_many, nms

__all__ = ["HostDecoder", "box_iou_one_to_many", "nms"]
