"""Model folders on disk: their format (safetensors plus a JSON config), the registry that finds them by
weights id, and publishing a trained run into the shipped set under models/weights."""
