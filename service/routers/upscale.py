from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from models import files
from models.files.errors import ImageTooLargeError
from models.inference.pipeline import plan_upscale
from service.caching import cache_headers, etag_for, not_modified
from service.inference import Timings, finish, refuse_when_busy, run_model
from service.negotiation import UPSCALE_CHOICE, negotiate
from service.routers.downscale import Format, Mode, ModelName, Scale
from service.routers.uploads_doc import IMAGE_ROUTE
from service.runtime import RuntimeDep
from service.uploads import encode_image, read_upload

router = APIRouter(tags=["rescale"])

NO_HEADER = (
    "this image has no rescale header (not made by /downscale, or its metadata was stripped); "
    "pass best_effort=true with scale (and mode/model) to upscale it with z = 0"
)


@router.post("/upscale", summary="Upscale a file made by /downscale back to its original size", **IMAGE_ROUTE)
async def upscale(
    request: Request,
    runtime: RuntimeDep,
    best_effort: Annotated[
        bool,
        Query(
            description="upscale an image without a rescale header (z = 0; a JPEG/WebP gets the compression-aware "
            "model), or one whose pixels changed since downscaling; flagged in X-Rescale-Degraded"
        ),
    ] = False,
    scale: Annotated[Scale, Query(description="with best_effort: the factor")] = Scale.x4,
    mode: Annotated[Mode, Query(description="with best_effort: which model's LR this is")] = Mode.plain,
    model: Annotated[ModelName | None, Query(description="with best_effort: irn or dlv-irn")] = None,
    format: Annotated[
        Format,
        Query(
            description="the upscaled image: png (lossless), jpeg, webp or avif; auto: from the Accept header "
            "(answered with Vary: Accept): AVIF, then WebP, when the client names them, by q-value, else jpeg"
        ),
    ] = Format.png,
    quality: Annotated[int, Query(ge=1, le=100, description="jpeg/webp/avif quality (each codec's own scale)")] = 90,
) -> Response:
    negotiated = format == Format.auto
    if negotiated:
        format = Format(negotiate(request.headers.get("accept"), UPSCALE_CHOICE))
    refuse_when_busy(runtime)
    timings = Timings()
    data = await timings.timed("read", read_upload(request))
    decoded = await timings.timed(
        "decode",
        runtime.in_codec_pool(
            files.decode,
            data,
            max_pixels=runtime.settings.max_pixels,
            allow_modified=best_effort,
            missing_header=None if best_effort else NO_HEADER,  # refused before its pixels are decoded
        ),
    )
    if decoded.header is not None:
        entry = runtime.catalogue.for_header(decoded.header)
    else:  # best effort: the caller's scale and mode choose the model
        entry = runtime.catalogue.resolve(
            model=model.value if model else None, mode=mode.value, scale=int(scale), format=decoded.format
        )
        if entry.config.alpha:
            decoded = decoded.with_neutral_alpha()
    cache_control = runtime.settings.cache_control
    described = {"format": format, "quality": quality, "best_effort": best_effort}
    tiling = await runtime.tiling(entry)
    described["engine"] = runtime.engines.signature(entry.weights_id, runtime.devices[0])
    if decoded.header is None:  # then the caller's scale and mode chose the model
        described |= {"scale": int(scale), "mode": mode}
    etag = etag_for("upscale", data, entry.weights_id, **described)
    if (cached := not_modified(request, etag, cache_control, negotiated=negotiated)) is not None:
        return cached
    downscaled = decoded.downscaled(entry.config.scale)
    h, w = downscaled.hr_size
    if h * w > runtime.settings.max_pixels:
        raise ImageTooLargeError(f"upscaled size {w}x{h} is over the {runtime.settings.max_pixels:,}-pixel limit")
    await runtime.check_cost(entry, "decode", (h, w))
    inputs, assemble = await runtime.in_codec_pool(plan_upscale, entry.config, downscaled, tiling)
    outputs = await run_model(runtime, request, "decode", entry.weights_id, inputs, timings)
    body = await timings.timed(
        "encode", runtime.in_codec_pool(lambda: encode_image(assemble(outputs), format.value, quality))
    )
    headers = finish("upscale", entry, (h, w), timings) | cache_headers(etag, cache_control, negotiated=negotiated)
    if decoded.degraded:
        headers["X-Rescale-Degraded"] = ",".join(decoded.degraded)
    return Response(body, media_type=files.MEDIA_TYPES[format.value], headers=headers)
