"""Shipping the chosen strategy: export bundles, the GGUF adapter, the OpenAI-compatible endpoint."""
