"""The PyTorch backend: an ONNX executor on torch kernels. Importing this package does not import torch."""
from .backend import open_model, TorchBackend

__all__ = ["TorchBackend", "open_model"]
