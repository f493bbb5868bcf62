"""The model definition MLflow loads ("models from code": no pickled Python object).

MLflow executes this file when the model is loaded; the ``pipeline`` package travels with the
model (``code_paths``), so loading needs only torch, pandas, numpy and mlflow.
"""

from mlflow.models import set_model

from pipeline.serving import TabularModel

set_model(TabularModel())
