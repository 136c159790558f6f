"""Fleet runs: the same comparison on several machines of a Ray cluster, scheduled by node labels."""
