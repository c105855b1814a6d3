"""Compiled GPU engines without TensorRT: AOTInductor packages built, cached and run by trtdet."""
