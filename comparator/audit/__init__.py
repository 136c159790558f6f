"""Audits: which settings keep a sample's result the same across batches, thread counts and repeated runs."""
