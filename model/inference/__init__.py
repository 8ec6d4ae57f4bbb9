"""Using a trained network: sampling, completion and likelihood.

- ``sampling``: what every sampler shares (per-image noise, seeds, labels, temperature, the
  inverse-CDF draw) and the naive reference sampler, one forward pass per pixel;
- ``caches``: the cached incremental models, one per architecture, that compute each layer at
  one new pixel per step;
- ``cached``: the fast sampler and teacher-forced logits on those caches;
- ``generation``: ``generate``, the one call that samples new images;
- ``particles``: sequential importance resampling over particles, shared by the next two;
- ``completion``: ``complete``, inpainting by sequential importance resampling;
- ``superres``: ``upscale`` and ``downscale``, super-resolution that agrees with the small image;
- ``likelihood``: per-pixel log-probabilities, bits/dim and the class posterior.

A new sampler is a new module here; it takes a ``PixelCNN`` and never reaches into training.
"""

from model.inference.completion import complete
from model.inference.generation import generate
from model.inference.likelihood import Likelihood, log_likelihood
from model.inference.superres import downscale, upscale

__all__ = ["Likelihood", "complete", "downscale", "generate", "log_likelihood", "upscale"]
