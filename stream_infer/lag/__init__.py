"""Consumer-group lag read from the broker: offsets, Burrow-like status, the ``stream-infer
lag`` command, and the exporter with its status page."""
