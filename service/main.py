"""The FastAPI app: `uvicorn service.main:app` or `rescale serve`."""

import asyncio
import logging
import logging.config
from contextlib import asynccontextmanager

from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline

from service.auth import require_api_key
from service.errors import install_error_handlers
from service.limits import BodySizeLimit, RequestMetrics, UploadTimeout
from service.logs import REQUEST_ID_HEADER, log_config, valid_request_id
from service.query import reject_unknown_query
from service.routers import demo, downscale, health, models, upscale
from service.routers import metrics as metrics_router
from service.runtime import Runtime
from service.settings import Settings

EXPOSED_HEADERS = [
    "X-Rescale-Variant",
    "X-Rescale-Scale",
    "X-Rescale-Original-Size",
    "X-Rescale-Weights-Id",
    "X-Rescale-Degraded",
    "X-Rescale-Input-Alpha",
    "Server-Timing",
    "Retry-After",
    "ETag",
    REQUEST_ID_HEADER,
]
ENDPOINTS = {"/downscale", "/upscale", "/healthz", "/readyz", "/metrics", "/v1/models", "/demo"}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.runtime = Runtime.start(settings)
        unloading = asyncio.create_task(app.state.runtime.unload_idle_models())
        yield
        unloading.cancel()
        await app.state.runtime.stop()

    app = FastAPIOffline(  # /docs and /redoc with Swagger UI and ReDoc served from the package: no CDN
        title="rescale",
        version="0.1.0",
        summary="Downscale images with invertible networks; upscale them back almost losslessly.",
        lifespan=lifespan,
        dependencies=[Depends(reject_unknown_query)],
    )
    install_error_handlers(app)
    protected = [Depends(require_api_key)]
    for router in (downscale.router, upscale.router, models.router):
        app.include_router(router, dependencies=protected)
    # probes and scrapers need no key, nor does the page (like /docs): its own requests carry the key typed into it
    for router in (health.router, metrics_router.router, demo.router):
        app.include_router(router)

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    app.add_middleware(UploadTimeout, timeout_s=settings.upload_timeout_s)
    if settings.cors_origins:  # preflights are answered here, before keys and limits
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "HEAD", "POST", "OPTIONS"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "If-None-Match", "X-Request-ID"],
            expose_headers=EXPOSED_HEADERS,
            max_age=600,
        )
    app.add_middleware(RequestMetrics, endpoints=ENDPOINTS)  # counts the 413s too
    _document_errors(app)
    # outermost: every answer, the middleware's own 408/413 included, carries the request id
    app.add_middleware(CorrelationIdMiddleware, header_name=REQUEST_ID_HEADER, validator=valid_request_id)
    logging.config.dictConfig(log_config(settings.log_level, settings.log_format))
    return app


def _document_errors(app: FastAPI) -> None:
    """Add the shared Error schema that the routers' error responses point to."""
    original = app.openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}},
        }
        return schema

    app.openapi = openapi


app = create_app()
