"""MLflow "models from code" entry: the pyfunc is built from this file, not unpickled."""

import mlflow

from deepvs30.pyfunc import Vs30PyFunc

mlflow.models.set_model(Vs30PyFunc())
