"""hcml.training."""
