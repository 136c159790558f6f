"""`python -m comparator.cli`."""
from comparator.cli import main

main()
