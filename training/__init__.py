"""Strategy Arena training: datasets, configs, trainers and the adapter registry (no UI imports)."""
