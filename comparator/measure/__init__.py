"""Stage 4: per-tensor metrics from one pass over the runs' tensors (facts.py), and the analyses over those facts."""
