"""bidsaudit's audit layer: index a BIDS dataset, read splits, run checks.

Heavy modules (pandas, nibabel, scikit-learn, great_expectations) are imported
by the modules that use them, never here, so ``bidsaudit --help`` stays fast.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
