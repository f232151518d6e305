"""Generation engines behind one small interface (base.py): torch (reference) and onnxruntime-genai (CPU)."""
