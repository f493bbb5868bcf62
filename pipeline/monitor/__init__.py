"""Monitoring: the served champion's current window against its own reference data.

* :mod:`pipeline.monitor.drift` — per-column drift tests (scipy.stats, Evidently's selection rules);
* :mod:`pipeline.monitor.live` — the live metric on late labels against the recorded test metric;
* :mod:`pipeline.monitor.episodes` — alert episodes, the retrain cool-down and validation guard;
* :mod:`pipeline.monitor.data` — the reference (through the champion's DVC hashes) and the window;
* :mod:`pipeline.monitor.report` — the HTML drift report;
* :mod:`pipeline.monitor.check` — one check end to end (``pipeline monitor``).

Importing this package has no side effects.
"""
