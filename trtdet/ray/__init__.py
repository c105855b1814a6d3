"""Scale-out on Ray (optional extra ``[ray]``): ``trtdet batch`` on Ray Data, ``trtdet serve`` on Ray Serve.

``Detect`` is the piece for users already on Ray::

    ds = ray.data.read_binary_files("s3://bucket/images/", include_paths=True)
    ds = ds.map_batches(Detect, fn_constructor_kwargs={"model": "yolo", "device": "cuda"},
                        concurrency=2, num_gpus=1, batch_size=32)

Importing this package does not import Ray; the modules that need it import it when used.
"""

from trtdet.ray.detect import Detect
from trtdet.ray.records import RECORD_SCHEMA

__all__ = ["RECORD_SCHEMA", "Detect"]
