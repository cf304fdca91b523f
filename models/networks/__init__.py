"""The networks: the invertible rescaler (its couplings and Haar levels still in models/) and what is added to
it (the LR restorer)."""
