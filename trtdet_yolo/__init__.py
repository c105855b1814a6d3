"""trtdet plugin for Ultralytics-style YOLO detectors (v5 and v8/11 heads)."""
