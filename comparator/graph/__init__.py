"""Stage 1: the model and its rewritten copies (tapped, float64-promoted, isolated, IR-lowered), and the feeds."""
