"""The certified structured interior-point method for the repair LP: ``certified`` (formulation and
certificate), ``mehrotra`` (the general IPM), ``normal_equations`` (the structured operator), ``blas_threads``."""
