"""hcml.data."""
