"""Track identities across video frames (``trtdet run --track``) with supervision's ByteTrack.

Optional: needs ``pip install 'trtdet[track]'`` (supervision 0.30: its last line with
``ByteTrack``; later versions moved trackers to the ``trackers`` package, which needs the
GUI build of OpenCV). Each video, camera or stream gets its own tracker; detections that
ByteTrack does not (yet) follow are dropped from that frame, as supervision does, and the
others carry ``data["track_id"]``.
"""

from __future__ import annotations

import warnings
from typing import Any

from trtdet.detections import Detections


class VideoTracker:
    """One ByteTrack per video source: ``update(source_name, detections, fps)`` -> tracked detections."""

    def __init__(self) -> None:
        try:
            import supervision
        except ModuleNotFoundError as exc:
            raise ModuleNotFoundError("--track needs supervision", name="supervision") from exc
        if not hasattr(supervision, "ByteTrack"):
            from trtdet.errors import UsageError

            raise UsageError(
                f"--track needs supervision's ByteTrack, which supervision {supervision.__version__} no longer has: "
                "pip install 'supervision>=0.30,<0.31' (or pip install 'trtdet[track]')"
            )
        self._supervision = supervision
        self._trackers: dict[str, Any] = {}

    def _tracker(self, name: str, fps: float | None) -> Any:
        tracker = self._trackers.get(name)
        if tracker is None:
            with warnings.catch_warnings():  # ByteTrack's deprecation notice: its successor is above
                warnings.simplefilter("ignore", FutureWarning)
                tracker = self._supervision.ByteTrack(frame_rate=fps or 30.0)
            self._trackers[name] = tracker
        return tracker

    def update(self, name: str, detections: Detections, fps: float | None = None) -> Detections:
        """The detections of the next frame of video ``name`` that ByteTrack follows, with their track ids."""
        tracked = self._tracker(name, fps).update_with_detections(detections.to_supervision())
        return Detections.from_supervision(tracked)
