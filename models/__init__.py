"""Invertible image rescaling: IRN and DLV-IRN with the -A (alpha) and -M (metadata) modules."""
