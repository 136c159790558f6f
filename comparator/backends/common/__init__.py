"""What the torch and TF executors share: the graph walker and the framework-neutral ONNX spec arithmetic."""
