"""Kept for plugins written before 0.2: ``AffineTransform`` lives in ``trtdet.geometry``."""

from trtdet.geometry import AffineTransform, letterbox_transform

__all__ = ["AffineTransform", "letterbox_transform"]
