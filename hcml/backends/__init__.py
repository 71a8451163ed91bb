"""hcml.backends."""
