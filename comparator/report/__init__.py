"""Renderers: each takes a Report and produces text (terminal, JSON, JUnit)."""
