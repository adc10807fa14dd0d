"""Workflows beside the runs: ``training`` the Fashion-MNIST families, and
computing a model's ``confusion`` matrix (the ``demo``, which also draws a report, lives in ``report``)."""
