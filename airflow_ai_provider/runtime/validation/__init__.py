"""The ``validate`` job: data checked against a Great Expectations suite (entry point :mod:`.job`)."""
