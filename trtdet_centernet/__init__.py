"""CenterNet (ctdet, ResNet-DCN) for trtdet: network, DCNv2, checkpoints, ONNX export, decode.

Torch is imported only by the modules that need it (network, dcn, checkpoint, export), so
running an exported ONNX file needs numpy and onnxruntime alone.
"""
