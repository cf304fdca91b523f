from fastapi import APIRouter

from service.runtime import RuntimeDep

router = APIRouter(tags=["operations"])


@router.get("/v1/models", summary="Loaded variants, scales, weights ids and devices")
async def list_models(runtime: RuntimeDep) -> dict:
    return {"models": runtime.catalogue.describe(), "devices": [str(d) for d in runtime.devices]}
