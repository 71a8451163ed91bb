"""hcml.model."""
