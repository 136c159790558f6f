"""The PyTorch backend: an ONNX executor on torch kernels. Importing this package does not import torch."""
from .backend import TorchBackend, open_model

__all__ = ["TorchBackend", "open_model"]
