"""The served model's pickle path: registered versions pickle `predictflow.model.ContractCleaner`.

The class lives in `predictflow.core.estimator`; this name stays so every version registered
before or after the move unpickles, and a retrain pickles byte-identical bytes."""

from predictflow.core.estimator import ContractCleaner

__all__ = ["ContractCleaner"]
