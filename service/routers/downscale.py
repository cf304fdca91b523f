from enum import IntEnum, StrEnum
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from models import files
from models.files.photos import BACKGROUND_NAME, TRANSPARENCY, decode_photo
from models.inference.pipeline import plan_downscale
from service.caching import cache_headers, etag_for, not_modified
from service.catalogue import MODELS
from service.errors import ServiceError
from service.inference import Timings, finish, refuse_when_busy, run_model
from service.negotiation import AUTO, DOWNSCALE_CHOICES, negotiate
from service.routers.uploads_doc import IMAGE_ROUTE
from service.runtime import RuntimeDep
from service.uploads import read_upload

router = APIRouter(tags=["rescale"])

Scale = IntEnum("Scale", {"x2": 2, "x4": 4})
Mode = StrEnum("Mode", {m: m for m in ("alpha", "metadata", "plain")})
Format = StrEnum("Format", {f: f for f in (*files.FORMATS, AUTO)})
Transparency = StrEnum("Transparency", {t: t for t in TRANSPARENCY})
ModelName = StrEnum("ModelName", {m.replace("-", "_"): m for m in MODELS})


@router.post("/downscale", summary="Downscale an image into a file that carries what the LR hides", **IMAGE_ROUTE)
async def downscale(
    request: Request,
    runtime: RuntimeDep,
    scale: Annotated[Scale, Query(description="downscaling factor")] = Scale.x4,
    mode: Annotated[
        Mode | None,
        Query(
            description="alpha: RGBA PNG (-A); metadata: latent in metadata (-M); plain. "
            "Default: alpha for png, plain for jpeg/webp/avif and for auto"
        ),
    ] = None,
    format: Annotated[
        Format,
        Query(
            description="png, or jpeg/webp/avif for plain and metadata (compression-aware models where shipped); "
            "auto: from the Accept header (answered with Vary: Accept): AVIF, then WebP, when the client names "
            "them, by q-value; otherwise plain gets jpeg, metadata png (JPEG cannot hold the code of larger "
            "photos; it is never picked for metadata) and alpha png. A wildcard (image/*, */*), no Accept or one "
            "with nothing writable gets that default, never a 406"
        ),
    ] = Format.png,
    quality: Annotated[int, Query(ge=1, le=100, description="jpeg/webp/avif quality (each codec's own scale)")] = 95,
    model: Annotated[ModelName | None, Query(description="irn or dlv-irn; default the best shipped")] = None,
    transparency: Annotated[
        Transparency,
        Query(
            description=f"transparent inputs: composite on {BACKGROUND_NAME} (X-Rescale-Input-Alpha says so), or refuse"
        ),
    ] = Transparency.composite,
) -> Response:
    if mode is None:
        mode = Mode.alpha if format == Format.png else Mode.plain
    negotiated = format == Format.auto
    if negotiated:
        format = Format(negotiate(request.headers.get("accept"), DOWNSCALE_CHOICES[mode.value]))
    if mode == Mode.alpha and format != Format.png:
        raise ServiceError(422, "invalid_parameter", "format: mode=alpha keeps the alpha channel, use format=png")
    refuse_when_busy(runtime)
    timings = Timings()
    entry = runtime.catalogue.resolve(
        model=model.value if model else None, mode=mode.value, scale=int(scale), format=format.value
    )
    data = await timings.timed("read", read_upload(request))
    tiling = await runtime.tiling(entry)
    cache_control = runtime.settings.cache_control
    etag = etag_for(
        "downscale",
        data,
        entry.weights_id,
        scale=int(scale),
        mode=mode,
        format=format,
        quality=quality,
        transparency=transparency,
        engine=runtime.engines.signature(entry.weights_id, runtime.devices[0]),
    )
    if (cached := not_modified(request, etag, cache_control, negotiated=negotiated)) is not None:
        return cached
    image, composited = await timings.timed(
        "decode",
        runtime.in_codec_pool(
            decode_photo, data, max_pixels=runtime.settings.max_pixels, transparency=transparency.value
        ),
    )
    await runtime.check_cost(entry, "encode", image.shape[:2])
    inputs, assemble = await runtime.in_codec_pool(plan_downscale, entry.config, image, tiling)
    outputs = await run_model(runtime, request, "encode", entry.weights_id, inputs, timings)
    body = await timings.timed(
        "encode",
        runtime.in_codec_pool(
            lambda: files.encode(
                assemble(outputs),
                variant=entry.config.variant,
                scale=int(scale),
                weights_id=entry.weights_id,
                format=format.value,
                quality=quality,
            )
        ),
    )
    headers = finish("downscale", entry, image.shape[:2], timings) | cache_headers(
        etag, cache_control, negotiated=negotiated
    )
    if composited:
        headers["X-Rescale-Input-Alpha"] = f"composited-on-{BACKGROUND_NAME}"
    return Response(body, media_type=files.MEDIA_TYPES[format.value], headers=headers)
