"""The TensorRT engine backend: builds, engine execution, TensorRT flavours.

Engine files use the core's artifact format and cache (``trtdet.contracts.artifact``,
``trtdet.engines.artifact_cache``). Nothing here imports TensorRT at import time;
``flavour.load_flavour`` does, on demand.
"""

from trtdet.engines.tensorrt.builder import BuildConfig, BuildResult, build_engine

__all__ = ["BuildConfig", "BuildResult", "build_engine"]
