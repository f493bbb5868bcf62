"""The model definition MLflow loads ("models from code": no pickled Python object).

MLflow executes this file when the model is loaded with ``mlflow.pyfunc.load_model``; the
``pipeline`` package travels with the model (``code_paths``), so loading needs only torch, pandas,
numpy and mlflow. That is for people who choose to trust the stored model: the pipeline itself
never executes this file, it loads models from their data files after checking their digests
(:func:`pipeline.serving.load_trusted_predictor`).
"""

from mlflow.models import set_model

from pipeline.serving import TabularModel

set_model(TabularModel())
