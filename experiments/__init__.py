"""The studies of docs/results.md: what each runs (``studies``), the driver (``run``, ``python -m
experiments``), the numbers read back from the runs as typed records (``records``, ``numbers``), the
tables and documents written from them (``tables``, ``document``) and the figures (``figures``)."""
