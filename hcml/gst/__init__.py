"""hcml.gst: everything that talks to GStreamer (``gi``) or DeepStream (``pyds``); no inference
logic here, and ``hcml.stream`` imports none of it (tests/test_layout.py).

* glue the elements share: ``floating``, ``roi_meta``, ``video`` (plane layout), ``deepstream``;
* programs that start GStreamer: ``environment`` (what it needs before ``Gst.init``),
  ``run_cli`` / ``run_errors`` (``hcml run``), ``game_server`` (``hcml game-server``'s sender),
  ``runner`` (the child process that runs pipelines for tests and ``hcml bench``).
"""
