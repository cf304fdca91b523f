"""What an operator and a CDN in front of the service expect, over real HTTP against uvicorn on loopback."""

import io
import re

import pytest
from PIL import Image

from tests.service_helpers import png_bytes


def post(client, path, data, **params):
    return client.post(path, content=data, params=params, headers={"content-type": "image/png"})


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("/downscale", {"sacle": "2"}, "unknown query parameter 'sacle'; this endpoint takes: format, mode, model, "),
        ("/upscale", {"best_effrot": "true", "x": "1"}, "unknown query parameters 'best_effrot', 'x'; this endpoint"),
    ],
)
def test_unknown_query_parameters_are_named(client, photo, path, params, message):
    response = post(client, path, png_bytes(photo), **params)
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "invalid_parameter" and body["message"].startswith(message)
    assert body["field"] == sorted(params)[0]


def test_the_413_for_a_large_upload_is_written_like_every_other_error(client):
    response = client.post("/downscale", content=b"\0" * 3_100_000, headers={"content-type": "image/png"})
    assert response.status_code == 413
    assert response.content == b'{"code":"upload_too_large","message":"the upload is over the 3,000,000-byte limit"}'


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_head_works_on_the_probes(client, path):
    response = client.head(path)
    assert response.status_code == 200 and response.content == b""


def test_readyz_documents_its_503(client):
    responses = client.get("/openapi.json").json()["paths"]["/readyz"]["get"]["responses"]
    assert "503" in responses and "not ready" in responses["503"]["description"]


@pytest.mark.parametrize(
    ("fmt", "media"), [("png", "image/png"), ("jpeg", "image/jpeg"), ("webp", "image/webp"), ("avif", "image/avif")]
)
def test_upscale_answers_in_the_format_asked(client, photo, fmt, media):
    small = post(client, "/downscale", png_bytes(photo), scale=2, mode="alpha").content
    response = post(client, "/upscale", small, format=fmt, quality=80)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media
    with Image.open(io.BytesIO(response.content)) as image:
        assert image.format == fmt.upper() and image.size == (70, 90)


# -- exposure: API keys and CORS --------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(weights):
    import httpx

    from tests.service_helpers import running_server, settings_for

    settings = settings_for(weights, api_keys=["key-one", "key-two"], cors_origins=["https://app.example"])
    with running_server(settings) as base, httpx.Client(base_url=base, timeout=60) as c:
        yield c


@pytest.mark.parametrize(
    "headers", [{}, {"X-API-Key": "nope"}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic key-one"}]
)
def test_without_a_valid_key_the_api_answers_401(guarded, photo, headers):
    for method, path in (("POST", "/downscale"), ("POST", "/upscale"), ("GET", "/v1/models")):
        response = guarded.request(
            method, path, content=png_bytes(photo), headers={"content-type": "image/png", **headers}
        )
        assert response.status_code == 401, (path, response.text)
        assert response.json() == {
            "code": "unauthorized",
            "message": "missing or unknown API key: send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
        }
        assert response.headers["www-authenticate"] == 'Bearer realm="rescale"'


@pytest.mark.parametrize("headers", [{"X-API-Key": "key-two"}, {"Authorization": "Bearer key-one"}])
def test_a_valid_key_in_either_header_is_accepted(guarded, photo, headers):
    response = guarded.post(
        "/downscale", params={"scale": 2}, content=png_bytes(photo), headers={"content-type": "image/png", **headers}
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_probes_and_metrics_need_no_key(guarded, path):
    assert guarded.get(path).status_code == 200


def test_cors_preflight_is_answered_for_allowed_origins_only(guarded):
    asked = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-api-key,content-type"}
    ok = guarded.options("/downscale", headers={"Origin": "https://app.example", **asked})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "https://app.example"
    assert "POST" in ok.headers["access-control-allow-methods"]
    other = guarded.options("/downscale", headers={"Origin": "https://evil.example", **asked})
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    simple = guarded.get("/healthz", headers={"Origin": "https://app.example"})
    assert simple.headers["access-control-allow-origin"] == "https://app.example"


def test_make_serve_listens_on_loopback_unless_a_host_is_given():
    import subprocess

    from tests.conftest import ROOT

    def dry_run(*args: str) -> str:
        return subprocess.run(["make", "-n", "serve", *args], cwd=ROOT, capture_output=True, text=True).stdout

    assert "rescale serve --host 127.0.0.1" in dry_run()
    assert "rescale serve --host 0.0.0.0" in dry_run("HOST=0.0.0.0")


# -- caching -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/downscale", "/upscale"])
def test_outputs_carry_a_strong_etag_and_304_when_the_client_has_them(client, photo, path):
    from service import metrics

    body = png_bytes(photo)
    if path == "/upscale":
        body = post(client, "/downscale", body, scale=2, mode="alpha").content
    params = {"scale": 2, "mode": "alpha"} if path == "/downscale" else {}
    first, second = post(client, path, body, **params), post(client, path, body, **params)
    assert first.status_code == second.status_code == 200
    assert first.content == second.content  # deterministic: same bytes, parameters and weights
    etag = first.headers["etag"]
    assert etag == second.headers["etag"] and etag.startswith('"') and not etag.startswith("W/")
    assert first.headers["cache-control"] == "public, max-age=31536000, immutable"
    images = metrics.REGISTRY.get_sample_value("rescale_images_total", {"endpoint": path.strip("/")})
    cached = client.post(
        path, content=body, params=params, headers={"content-type": "image/png", "if-none-match": f'"x", {etag}'}
    )
    assert cached.status_code == 304 and cached.content == b"" and cached.headers["etag"] == etag
    assert metrics.REGISTRY.get_sample_value("rescale_images_total", {"endpoint": path.strip("/")}) == images
    other = post(client, path, body, **(params | {"mode": "plain"} if params else {"format": "webp"}))
    assert other.status_code == 200 and other.headers["etag"] != etag


# -- the CLI behaves like the service ----------------------------------------------------------------


def test_cli_refuses_a_file_that_is_not_an_image_in_one_line(tmp_path, capsys, weights):
    from models.cli import main

    src = tmp_path / "notes.png"
    src.write_text("not an image")
    code = main(
        [
            "downscale",
            str(src),
            str(tmp_path / "out.png"),
            "--no-shipped",
            "--weights",
            str(weights["irn-a-x2"]),
            "--scale",
            "2",
        ]
    )
    assert code == 2
    assert capsys.readouterr().err == "rescale downscale: not a PNG, JPEG, WebP or AVIF file\n"


def test_gif_is_refused_by_the_cli_and_the_service_alike(client, tmp_path, capsys, weights, photo):
    from models.cli import main

    gif = tmp_path / "a.gif"
    Image.fromarray(photo).save(gif)
    argv = ["downscale", str(gif), str(tmp_path / "out.png"), "--no-shipped", "--weights", str(weights["irn-a-x2"])]
    assert main([*argv, "--scale", "2"]) == 2
    assert capsys.readouterr().err == "rescale downscale: not a PNG, JPEG, WebP or AVIF file\n"
    response = client.post(
        "/downscale", params={"scale": 2}, content=gif.read_bytes(), headers={"content-type": "image/png"}
    )
    assert response.status_code == 415 and response.json()["message"] == "not a PNG, JPEG, WebP or AVIF file"


@pytest.mark.parametrize("command", ["downscale", "upscale", "eval", "demo", "serve", "publish"])
def test_every_option_shows_its_default_in_help(command, capsys):
    from models.cli import main

    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out.split("options:", 1)[1]
    entries = re.split(r"\n  (?=-)", text)[1:]  # one per option: its flags, then its help
    assert entries
    for entry in entries:
        if entry.startswith("-h, --help") or "(required)" in entry:
            continue
        assert "default" in " ".join(entry.split()), entry


# -- transparent inputs --------------------------------------------------------------------------------


def transparent_png(photo) -> bytes:
    import numpy as np

    alpha = np.full(photo.shape[:2], 255, np.uint8)
    alpha[:20, :20] = 0  # a transparent corner
    return png_bytes(np.dstack([photo, alpha]))


def test_transparent_input_is_composited_on_white_and_says_so(client, photo):
    import numpy as np

    data = transparent_png(photo)
    response = post(client, "/downscale", data, scale=2, mode="plain")
    assert response.status_code == 200, response.text
    assert response.headers["x-rescale-input-alpha"] == "composited-on-white"
    whited = photo.copy()
    whited[:20, :20] = 255
    expected = post(client, "/downscale", png_bytes(whited), scale=2, mode="plain")
    assert "x-rescale-input-alpha" not in expected.headers
    got = np.asarray(Image.open(io.BytesIO(response.content)))
    assert np.array_equal(got, np.asarray(Image.open(io.BytesIO(expected.content))))


def test_transparent_input_is_refused_when_asked(client, photo):
    response = post(client, "/downscale", transparent_png(photo), scale=2, transparency="refuse")
    assert response.status_code == 422
    assert response.json() == {
        "code": "transparent_input",
        "message": "the image has transparent pixels; send it without alpha, or with transparency=composite to "
        "have it composited on white",
    }
    assert post(client, "/downscale", png_bytes(photo), scale=2, transparency="refuse").status_code == 200
