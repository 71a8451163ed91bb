"""hcml.stream."""
