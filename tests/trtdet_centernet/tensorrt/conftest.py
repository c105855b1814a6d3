"""CenterNet's TensorRT tests use the core TensorRT tests' fixtures (TensorRT-RTX, the backend and
CenterNet hooks registered, a CenterNet export): one definition, in ``tests/trtdet/engines/tensorrt``."""

from tests.trtdet.engines.tensorrt.conftest import (  # noqa: F401
    centernet_onnx,
    centernet_torch_model,
    rtx,
    tensorrt_plugins,
)
