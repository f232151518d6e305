"""Strategy Arena retrieval: loading, chunking, embedding, indexes and search (no UI imports)."""
