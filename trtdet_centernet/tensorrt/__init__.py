"""CenterNet's contribution to TensorRT builds: the three DCNv2 lowerings and their hooks.

``decomposed``: DCN as standard ONNX ops (any TensorRT, TensorRT-RTX, ONNX Runtime);
``plugin``: the product's own DCNv2 TensorRT plugin (Python ``IPluginV3``);
``builtin``: ONNX ``DeformConv`` left for TensorRT >= 10.1's ``ModulatedDeformConv2d``.
"""
