"""`format=auto`: the output format from the Accept header, with Vary and an ETag per variant."""

import io

import httpx
import pytest
from PIL import Image

from models.store.registry import weights_id
from service.negotiation import DOWNSCALE_CHOICES, UPSCALE_CHOICE, negotiate
from tests.service_helpers import png_bytes, running_server, settings_for

CHROME = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
SAFARI_15 = "image/webp,image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5"
OLD_SAFARI = "image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5"


@pytest.mark.parametrize(
    ("accept", "plain", "metadata"),
    [
        (None, "jpeg", "png"),
        ("", "jpeg", "png"),
        ("*/*", "jpeg", "png"),  # curl, a browser's fetch: the default, never a 406
        ("image/*", "jpeg", "png"),
        (CHROME, "avif", "avif"),
        (SAFARI_15, "webp", "webp"),
        (OLD_SAFARI, "jpeg", "png"),  # PNG is never negotiated for plain: ask format=png
        ("image/webp;q=0.9, image/avif;q=0.8", "webp", "webp"),
        ("image/avif;q=0.8, image/webp;q=0.8", "avif", "avif"),  # a tie goes to the preferred codec
        ("image/avif;q=0, image/webp", "webp", "webp"),
        ("image/avif;q=0, image/*", "jpeg", "png"),
        ("image/avif;q=0.5, */*", "jpeg", "png"),  # the wildcard gives the default q=1 > 0.5
        ("image/jpeg", "jpeg", "png"),  # JPEG cannot hold a large -M code: never negotiated for metadata
        ("image/jpeg;q=0", "jpeg", "png"),  # nothing writable is acceptable: the default
        ("text/html", "jpeg", "png"),
        ("IMAGE/AVIF ; Q=0.7, image/webp;q=0.6", "avif", "avif"),
        ("image/avif;q=abc, image/webp;q=0.1", "webp", "webp"),  # a malformed q drops its range
    ],
)
def test_negotiate(accept, plain, metadata):
    assert negotiate(accept, DOWNSCALE_CHOICES["plain"]) == plain
    assert negotiate(accept, DOWNSCALE_CHOICES["metadata"]) == metadata
    assert negotiate(accept, DOWNSCALE_CHOICES["alpha"]) == "png"
    assert negotiate(accept, UPSCALE_CHOICE) == plain


@pytest.fixture(scope="module")
def client(folders):
    with running_server(settings_for(folders)) as base, httpx.Client(base_url=base, timeout=60) as c:
        yield c


def downscale(client, photo, accept: str | None, **params) -> httpx.Response:
    request = client.build_request(
        "POST",
        "/downscale",
        content=png_bytes(photo),
        params={"scale": 2, **params},
        headers={"content-type": "application/octet-stream", "accept": accept or ""},
    )
    if accept is None:
        del request.headers["accept"]  # httpx sends */* unless told otherwise
    return client.send(request)


@pytest.mark.parametrize(
    ("accept", "fmt"),
    [
        (None, "jpeg"),
        ("*/*", "jpeg"),
        (CHROME, "avif"),
        ("image/webp;q=0.9, image/avif;q=0.8", "webp"),
        ("image/avif;q=0, image/webp;q=0, image/*", "jpeg"),
    ],
)
def test_auto_writes_the_negotiated_format_with_vary(client, folders, photo, accept, fmt):
    response = downscale(client, photo, accept, format="auto")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == f"image/{fmt}"
    assert response.headers["vary"] == "Accept"
    assert response.headers["x-rescale-weights-id"] == weights_id(folders["irn-jpeg"])  # plain, compression-aware
    with Image.open(io.BytesIO(response.content)) as image:
        assert image.format == fmt.upper() and image.size == (35, 45)


def test_an_explicit_format_wins_over_accept_and_needs_no_vary(client, photo):
    response = downscale(client, photo, "image/avif", format="webp")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/webp" and "vary" not in response.headers
    default = downscale(client, photo, "image/avif")  # no format: PNG, as before
    assert default.headers["content-type"] == "image/png" and "vary" not in default.headers


def test_auto_for_metadata_and_alpha(client, folders, photo):
    metadata = downscale(client, photo, "*/*", format="auto", mode="metadata")
    assert metadata.headers["content-type"] == "image/png" and metadata.headers["vary"] == "Accept"
    assert metadata.headers["x-rescale-weights-id"] == weights_id(folders["irn-m"])
    alpha = downscale(client, photo, "image/avif", format="auto", mode="alpha")
    assert alpha.headers["content-type"] == "image/png" and alpha.headers["vary"] == "Accept"
    with Image.open(io.BytesIO(alpha.content)) as image:
        assert image.mode == "RGBA"


def test_each_variant_has_its_own_etag_and_304s_only_itself(client, photo):
    answers = {
        accept: downscale(client, photo, accept, format="auto") for accept in ("image/avif", "image/webp", "*/*")
    }
    etags = {accept: r.headers["etag"] for accept, r in answers.items()}
    assert len(set(etags.values())) == 3
    explicit = downscale(client, photo, None, format="avif")
    assert explicit.headers["etag"] == etags["image/avif"] and explicit.content == answers["image/avif"].content
    same = client.post(
        "/downscale",
        content=png_bytes(photo),
        params={"scale": 2, "format": "auto"},
        headers={"content-type": "image/png", "accept": "image/avif", "if-none-match": etags["image/avif"]},
    )
    assert same.status_code == 304 and same.headers["etag"] == etags["image/avif"]
    assert same.headers["vary"] == "Accept"
    other = client.post(
        "/downscale",
        content=png_bytes(photo),
        params={"scale": 2, "format": "auto"},
        headers={"content-type": "image/png", "accept": "image/webp", "if-none-match": etags["image/avif"]},
    )
    assert other.status_code == 200 and other.headers["content-type"] == "image/webp"
    assert other.headers["etag"] == etags["image/webp"]


def test_upscale_negotiates_its_output_too(client, photo):
    small = downscale(client, photo, None, format="png", mode="plain").content
    for accept, fmt in [("image/avif,image/webp", "avif"), ("image/webp", "webp"), ("*/*", "jpeg")]:
        response = client.post(
            "/upscale",
            content=small,
            params={"format": "auto"},
            headers={"content-type": "image/png", "accept": accept},
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == f"image/{fmt}" and response.headers["vary"] == "Accept"
        with Image.open(io.BytesIO(response.content)) as image:
            assert image.format == fmt.upper() and image.size == (70, 90)
    png = client.post("/upscale", content=small, headers={"content-type": "image/png", "accept": "image/avif"})
    assert png.headers["content-type"] == "image/png" and "vary" not in png.headers


def test_openapi_documents_auto(client):
    spec = client.get("/openapi.json").json()
    params = {p["name"]: p for p in spec["paths"]["/downscale"]["post"]["parameters"]}
    assert params["format"]["schema"]["$ref"] == "#/components/schemas/Format"
    assert "auto: from the Accept header (answered with Vary: Accept)" in params["format"]["description"]
    assert spec["components"]["schemas"]["Format"]["enum"] == ["png", "jpeg", "webp", "avif", "auto"]
    upscale = {p["name"]: p for p in spec["paths"]["/upscale"]["post"]["parameters"]}
    assert "auto: from the Accept header" in upscale["format"]["description"]
