"""lvm_tutorial: the kernels of the executable course on latent variable models in JAX.

Modules, one topic each:

- :mod:`~lvm_tutorial.distributions`: diagonal Gaussians and their mixtures.
- :mod:`~lvm_tutorial.estimators`: ELBO, IWAE bounds, SUMO and its random number of terms, and
  the configuration values ``Tail``, ``IWAE``, ``SUMO``.
- :mod:`~lvm_tutorial.gradients`: score-function and reparameterisation gradient samples;
  :mod:`~lvm_tutorial.iwae_gradients`: the IWAE gradient, STL and DReG, and their SNR.
- :mod:`~lvm_tutorial.targets`: the funnel target density and the statistics of samples against it.
- :mod:`~lvm_tutorial.linear_gaussian`: the closed-form oracle model.
- :mod:`~lvm_tutorial.networks`, :mod:`~lvm_tutorial.vae`: MLPs, encoder and decoder, and a
  model as a ``LatentModel`` value.
- :mod:`~lvm_tutorial.training`: the one training scan (``fit``); :mod:`~lvm_tutorial.data`: data sets.
- :mod:`~lvm_tutorial.packed`: SUMO and IWAE of many examples packed into flat buffers;
  :mod:`~lvm_tutorial.sumo_training`: the exact SUMO trainer for any ``LatentModel``, on data or
  on a target density; :mod:`~lvm_tutorial.sharding`: data parallelism across devices (a mesh,
  SUMO's examples balanced over it).
- Chapter topics, one module each: :mod:`~lvm_tutorial.importance` (prior sampling, ch. 1-2),
  :mod:`~lvm_tutorial.inference` (variational and amortised inference, ch. 3),
  :mod:`~lvm_tutorial.discrete` (score function for a categorical latent, ch. 4),
  :mod:`~lvm_tutorial.digits` (VAE and IWAE on binarised digits, ch. 5),
  :mod:`~lvm_tutorial.roulette` (Russian roulette on a series, ch. 6),
  :mod:`~lvm_tutorial.funnel` (the sampler of ch. 7 and its evaluation).
- :mod:`~lvm_tutorial.compilation`: counting compilations.
- :mod:`~lvm_tutorial.plotting`: the plot helpers; :mod:`~lvm_tutorial.report`: printing numbers
  to the digits they know; :mod:`~lvm_tutorial.exercises`: checkers.
"""
from . import (compilation, data, digits, discrete, distributions, estimators, exercises, funnel,
               gradients, importance, inference, iwae_gradients, linear_gaussian, networks, packed,
               plotting, report, roulette, runtime, sharding, sumo_training, targets, training,
               vae)
from .data import TRUE_MIXTURE, Mixture, load_digits_binary, make_moons
from .distributions import (diag_normal_entropy, diag_normal_log_prob, diag_normal_sample,
                            mixture_log_prob, mixture_posterior, mixture_sample)
from .compilation import count_compilations
from .estimators import (IWAE, SUMO, Tail, buffer_sizes, effective_sample_size, elbo,
                         expected_num_terms, iwae_bound, iwae_bounds, log_tail_survival,
                         max_num_terms, sample_num_terms, sumo, sumo_from_log_weights,
                         tail_survival)
from .gradients import leave_one_out_baseline, reparam_grad_samples, score_function_grad_samples
from .networks import gaussian_head, mlp_apply, mlp_init
from .report import format_bound, format_estimate, format_mean, format_quantiles
from .runtime import describe_runtime
from .targets import FUNNEL_SCALE, funnel_log_prob, funnel_sample
from .sharding import data_mesh
from .sumo_training import DensityEstimation, DensityMatching, fit_sumo, packed_log_prob
from .training import TrainState, fit, init_state, run_steps, train_step
from .vae import (LatentModel, VAEParams, encode, iwae_loss, latent_model, vae_init,
                  vae_log_weights, vae_sample)

__version__ = "0.1.0"
