"""Reading back the ISA oneDNN really dispatches to.

Neither torch nor TensorFlow has a getter for it, but oneDNN in verbose mode prints a banner naming the ISA at
its first primitive, on the process's file descriptor 1 (not through Python's sys.stdout). The backends run a
probe primitive with fd 1 redirected to a temporary file and read the banner from there.
"""
from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable


def isa_from_verbose(probe: Callable[[], None], missing: str) -> str:
    """Run `probe` with fd 1 captured; return the ISA named by oneDNN's verbose output, else `missing`."""
    saved = os.dup(1)
    with tempfile.TemporaryFile() as tmp:
        sys.stdout.flush()
        os.dup2(tmp.fileno(), 1)
        try:
            probe()
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read().decode(errors="replace")
    return next((line.split("isa:", 1)[1].strip() for line in text.splitlines() if ",isa:" in line), missing)
