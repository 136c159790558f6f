"""`python -m comparator.cli`."""
from comparator.cli import run

run()
