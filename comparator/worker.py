"""`python -m comparator.worker REQUEST.json` keeps working: the worker lives in comparator.run.worker."""
from __future__ import annotations

if __name__ == "__main__":
    import os
    import sys

    from comparator.run.worker import main

    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
