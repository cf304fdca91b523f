"""Every limit and knob of the service, read from RESCALE_* environment variables."""

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.inference.engines import default_cache_dir
from models.inference.memory import DEFAULT_TILE_MEMORY_MB


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RESCALE_", env_file=None)

    host: str = "0.0.0.0"
    port: int = Field(8000, ge=1, le=65535)
    log_level: str = "info"
    log_format: Literal["text", "json"] = Field("text", description="json: one JSON object per line")

    # exposure: API keys (JSON list; empty = open) and the browser origins allowed by CORS (JSON list)
    api_keys: list[SecretStr] = Field(default_factory=list, description="401 without one of these keys")
    cors_origins: list[str] = Field(default_factory=list, description='e.g. ["https://app.example"] or ["*"]')

    # models
    weights_dirs: list[Path] = Field(default_factory=list, description="model folders besides the shipped ones")
    include_shipped_weights: bool = True
    device: str = Field("auto", description="auto: every visible CUDA device, else the CPU")
    torch_threads: int | None = Field(None, ge=1, description="intra-op threads of a CPU worker (default: all cores)")
    backend: Literal["auto", "torch", "openvino"] = Field(
        "auto", description="auto: OpenVINO on the CPU (2x faster here, same outputs), PyTorch on GPUs"
    )
    precision: Literal["fp32", "bf16", "auto"] = Field(
        "fp32",
        description="bf16/auto: bf16 where the device has it natively (AMX, AVX512-BF16, GPUs), about 2x faster "
        "on such CPUs, outputs up to ~2/255 from fp32; fp32 elsewhere. Files stay 8-bit",
    )
    preload: list[str] = Field(
        default_factory=list,
        description='models built before the service is ready (JSON list: ["all"], ["irn-a-x4", "irn-jpeg-x2"]); '
        "the others build on their first request, from the graph cache in seconds",
    )
    max_loaded_models: int | None = Field(
        4, ge=1, description="engines kept built (each holds its graphs and their working memory); LRU beyond"
    )
    unload_idle_s: float | None = Field(
        120.0,
        gt=0,
        description="a loaded model not asked for in this many seconds is dropped with the memory its last large "
        "image left (GBs), and loads again on its next request; preloaded models stay; unset: never",
    )
    compile_cache_dir: Path | None = Field(
        default_factory=default_cache_dir, description="converted OpenVINO graphs are kept here across restarts"
    )

    # input limits
    max_upload_bytes: int = Field(50 * 2**20, ge=1024, description="413 above this")
    upload_timeout_s: float = Field(60.0, gt=0, description="408 when the request body takes longer to arrive")
    max_pixels: int = Field(16_800_000, ge=1, description="413 above this many HR pixels, checked before decoding")

    # batching and queueing
    max_batch_size: int = Field(4, ge=1)
    max_batch_wait_ms: float = Field(10.0, ge=0)
    max_queue: int = Field(64, ge=1, description="queued model inputs (tiles); 503 when full")
    request_timeout_s: float = Field(120.0, gt=0)
    latency_objective_s: float | None = Field(
        None, gt=0, description="p99 latency objective for the alert; default 10 s with a GPU, 60 s on the CPU"
    )
    retry_after_s: int = Field(2, ge=1)
    drain_timeout_s: float = Field(30.0, ge=0)

    # memory: images are processed in equal LR tiles, each as large as tile_memory_mb allows for the model's
    # measured peak per pixel, with the context the model was measured to need; set either to override
    tile_memory_mb: int = Field(DEFAULT_TILE_MEMORY_MB, ge=16, description="per model input (tile)")
    tile_lr: int | None = Field(None, ge=16, description="LR tile side; default from tile_memory_mb")
    tile_overlap_lr: int | None = Field(None, ge=0, description="LR context per tile side; default measured")

    # outputs are deterministic for the same bytes, parameters and weights: strong ETags, 304 on If-None-Match
    cache_control: str = Field("public, max-age=31536000, immutable", description="Cache-Control of results")

    # PNG/JPEG/WebP work runs on this many threads, off the event loop and off the model workers
    codec_threads: int = Field(2, ge=1)
