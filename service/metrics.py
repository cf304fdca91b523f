"""Prometheus metrics (one process per device set: the batcher lives in-process, see README)."""

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120)

REQUESTS = Counter(
    "rescale_requests_total", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=REGISTRY
)
REQUEST_SECONDS = Histogram(
    "rescale_request_duration_seconds", "Request latency", ["endpoint"], buckets=LATENCY_BUCKETS, registry=REGISTRY
)
STAGE_SECONDS = Histogram(
    "rescale_request_stage_seconds",
    "Time per request stage (decode, queue, model, encode)",
    ["stage"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "rescale_requests_in_flight", "Requests received and not yet answered", ["endpoint"], registry=REGISTRY
)
QUEUE_DEPTH = Gauge("rescale_queue_depth", "Model inputs waiting for a worker", registry=REGISTRY)
QUEUE_CAPACITY = Gauge("rescale_queue_capacity", "Model inputs the queue holds before refusing", registry=REGISTRY)
QUEUE_WAIT_SECONDS = Histogram(
    "rescale_queue_wait_seconds", "Time a model input waited for its batch", buckets=LATENCY_BUCKETS, registry=REGISTRY
)
BATCH_SIZE = Histogram(
    "rescale_batch_size", "Model inputs per batch", buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32), registry=REGISTRY
)
MODEL_SECONDS = Histogram(
    "rescale_model_seconds", "Network time per batch", ["op"], buckets=LATENCY_BUCKETS, registry=REGISTRY
)
IMAGES = Counter("rescale_images_total", "Images processed", ["endpoint"], registry=REGISTRY)
MEGAPIXELS = Counter("rescale_megapixels_total", "HR megapixels processed", ["endpoint"], registry=REGISTRY)
DROPPED = Counter("rescale_dropped_total", "Model inputs dropped before running", ["reason"], registry=REGISTRY)
REJECTED = Counter("rescale_rejected_total", "Requests refused because the queue was full", registry=REGISTRY)
LATENCY_OBJECTIVE = Gauge(
    "rescale_latency_objective_seconds",
    "p99 latency above which the alert fires (follows the device)",
    registry=REGISTRY,
)
DEVICE_INFO = Gauge("rescale_device_info", "Devices the workers run on", ["device", "name"], registry=REGISTRY)
