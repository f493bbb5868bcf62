"""Serving the registered champion over HTTP (``pipeline serve``), the prediction log, and the late
labels that join it (``pipeline feedback``). See docs/serving.md.

* :mod:`~pipeline.serve.predlog` — the prediction log and feedback tables (SQLAlchemy, in the
  feature store's database) and the bounded, batching writer.
* :mod:`~pipeline.serve.server` — the model holder that follows an alias, and the HTTP server
  (MLflow's scoring protocol).
"""
