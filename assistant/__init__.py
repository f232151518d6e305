"""Strategy Arena core: model loading, variants, generation and comparison (no UI imports)."""
