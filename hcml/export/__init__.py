"""hcml.export."""
