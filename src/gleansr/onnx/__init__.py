"""GLEAN as ONNX: :mod:`.export` writes a model file (needs torch, onnx, onnxscript) and
:mod:`.runtime` runs one with ONNX Runtime (needs only numpy and onnxruntime, no torch).

This package imports nothing itself, so that importing the runtime never pulls in torch.
"""
