"""The TensorFlow backend: an ONNX executor on TF kernels. Importing this package does not import TensorFlow."""
from .backend import open_model, TfBackend

__all__ = ["TfBackend", "open_model"]
