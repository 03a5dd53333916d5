"""MLflow "models from code": the file MLflow runs to build the registered model, so that nothing
is unpickled at load time. The booster and its parameters come from the model's artifacts."""
import mlflow

from training.credit_model import CreditModel

mlflow.models.set_model(CreditModel())
