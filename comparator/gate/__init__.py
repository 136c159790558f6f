"""Release gates over compare's results: .icmp bundles, TOML policies, verdicts, model-vs-model checks."""
