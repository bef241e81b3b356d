"""Framework-light pre- and post-processing (NumPy, with torch only where tensors come in)."""
