"""The REST service: /downscale and /upscale on a batching worker pool."""
