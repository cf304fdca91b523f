"""The networks: the invertible rescaler (Haar levels, affine couplings), the -M latent codec, the LR restorer
of the compression-aware models, and the shippable model that puts them together (`rescaler.py`)."""
