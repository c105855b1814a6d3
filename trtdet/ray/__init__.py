"""Scale-out on Ray (optional extra ``[ray]``): ``trtdet batch`` on Ray Data, ``trtdet serve`` on Ray Serve.

``Detect`` is the piece for users already on Ray::

    ds = ray.data.read_binary_files("s3://bucket/images/", include_paths=True)
    ds = ds.map_batches(Detect, fn_constructor_kwargs={"model": "yolo", "device": "cuda"},
                        concurrency=2, num_gpus=1, batch_size=32)

Importing this package imports neither Ray nor pyarrow (``trtdet.ray.cluster.import_ray``
says how to install them); ``Detect`` and ``RECORD_SCHEMA`` load on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RECORD_SCHEMA", "Detect"]


def __getattr__(name: str) -> Any:
    if name == "Detect":
        from trtdet.ray.detect import Detect

        return Detect
    if name == "RECORD_SCHEMA":
        from trtdet.ray.records import RECORD_SCHEMA

        return RECORD_SCHEMA
    raise AttributeError(f"module 'trtdet.ray' has no attribute {name!r}")
