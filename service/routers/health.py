from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.runtime import RuntimeDep

router = APIRouter(tags=["operations"])


@router.head("/healthz", include_in_schema=False)
@router.get("/healthz", summary="The process is alive (HEAD too)")
async def healthz() -> dict:
    return {"status": "ok"}


NOT_READY = {
    503: {
        "description": "not ready: weights missing, a worker stopped, or the queue saturated",
        "content": {"application/json": {"example": {"status": "not_ready", "checks": {}, "queue_depth": 64}}},
    }
}


@router.head("/readyz", include_in_schema=False)
@router.get("/readyz", summary="Weights loaded, workers running, queue not saturated (HEAD too)", responses=NOT_READY)
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    checks = {
        "models_loaded": bool(runtime.catalogue.registry.entries),
        "workers_running": runtime.batcher.alive,
        "queue_not_saturated": not runtime.batcher.saturated,
    }
    ready = all(checks.values())
    body = {"status": "ready" if ready else "not_ready", "checks": checks, "queue_depth": runtime.batcher.depth}
    return JSONResponse(body, status_code=200 if ready else 503)
