"""Evaluation: round trips through the product's files, rate-distortion through real codecs, the report."""
