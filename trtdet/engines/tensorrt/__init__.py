"""The TensorRT engine backend: builds, engine files, the engine cache and execution.

Nothing here imports TensorRT at import time; ``flavour.load_flavour`` does, on demand.
"""

from trtdet.engines.tensorrt.builder import BuildOptions, BuildResult, build_engine
from trtdet.engines.tensorrt.engine_file import EngineMetadata, read_engine, write_engine

__all__ = ["BuildOptions", "BuildResult", "EngineMetadata", "build_engine", "read_engine", "write_engine"]
