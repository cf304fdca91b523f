"""Training: patch sampling, objectives, the model-agnostic loop and the `rescale train` run."""
