"""CenterNet's contribution to TensorRT builds: the ``dcn`` build step and its three lowerings.

``decomposed``: DCN as standard ONNX ops (any TensorRT, TensorRT-RTX, ONNX Runtime);
``plugin``: the product's own DCNv2 TensorRT plugin (Python ``IPluginV3``);
``builtin``: ONNX ``DeformConv`` left for TensorRT >= 10.1's ``ModulatedDeformConv2d``.
The step (``step.py``) reaches the core through the ``trtdet_build_steps`` hook (``hooks.py``).
"""
