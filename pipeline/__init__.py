"""A Kubernetes-native, end-to-end ML training pipeline.

Importing this package has no side effects: it creates no folders, opens no connections and sets
no MLflow tracking URI. Heavy libraries (pandas, torch, MLflow, Great Expectations, DVC) are
imported inside the steps that need them.
"""

__version__ = "0.1.0"
