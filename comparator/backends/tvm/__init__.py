"""The Apache TVM backend: Relax import, compile (cached), VM. Importing this package does not import TVM."""
from .backend import TvmBackend, import_tvm

__all__ = ["TvmBackend", "import_tvm"]
