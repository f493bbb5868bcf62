"""Helpers of the ``ml_pipeline`` DAG: settings, operators, alerts. Wiring only, no pipeline code.

This folder is listed in ``dags/.airflowignore``: it is imported by the DAG file, not parsed as DAGs.
"""
