"""The TensorFlow executor's op table with every family registered: what a session runs with.

Each family module registers its op functions on `table.TABLE` when imported; importing them here, and only
here, keeps the table free of imports of its own families.
"""
from __future__ import annotations

from ..common.executor import OpTable
from . import (attention, control, conv, extra, index, math, nn, quant, reduce,  # noqa: F401 - each registers
               resize, rnn, shape)
from .table import TABLE


def load() -> OpTable:
    """The table, every family registered."""
    return TABLE
