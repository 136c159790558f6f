"""The TensorFlow backend: an ONNX executor on TF kernels. Importing this package does not import TensorFlow."""
from .backend import TfBackend, open_model

__all__ = ["TfBackend", "open_model"]
