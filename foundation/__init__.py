"""Foundation layer: what every other layer shares (errors, settings, files, stores, names)."""
