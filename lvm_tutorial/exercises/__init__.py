"""Exercise checkers, one module per chapter; each ``check_*`` function returns a :class:`Feedback`.

``mixtures`` (ch. 1), ``importance_sampling`` (ch. 2), ``elbo`` (ch. 3), ``gradients`` (ch. 4),
``iwae`` (ch. 5), ``sumo`` (ch. 6), ``funnel`` (ch. 7), ``density_estimation`` (ch. 8).
"""
from . import (density_estimation, elbo, funnel, gradients, importance_sampling, iwae,
               mixtures, sumo)
from ._core import Feedback, compare

__all__ = ["Feedback", "compare", "mixtures", "importance_sampling", "elbo", "gradients", "iwae",
           "sumo", "funnel", "density_estimation"]
