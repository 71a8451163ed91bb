"""hcml.gst: GStreamer glue that the elements share (no inference logic here)."""
