from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.runtime import RuntimeDep

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="Weights loaded, workers running, queue not saturated")
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    checks = {
        "models_loaded": bool(runtime.catalogue.registry.entries),
        "workers_running": runtime.batcher.alive,
        "queue_not_saturated": not runtime.batcher.saturated,
    }
    ready = all(checks.values())
    body = {"status": "ready" if ready else "not_ready", "checks": checks, "queue_depth": runtime.batcher.depth}
    return JSONResponse(body, status_code=200 if ready else 503)
