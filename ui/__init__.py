"""Gradio wiring for Strategy Arena: small tab modules over the core library."""
