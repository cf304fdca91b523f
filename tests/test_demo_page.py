"""GET /demo: the page a person opens, driven by a real headless browser (Debian's chromium, installed by .ci/run)
against a real server on loopback, with and without API keys.

The page runs its whole flow when its URL fragment names a same-origin sample (`#sample=/path&scale=2&...`); the
test adds that sample's route to its own app, so the service itself serves no sample. The shipped x2 IRN and
IRN-A serve: the page must show the restored image beating bicubic, which the tiny untrained models cannot.
"""

import fnmatch
import html
import io
import math
import re
import subprocess
import tomllib
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi import Response
from PIL import Image

from models.evaluation.metrics import psnr_y
from service.main import create_app
from service.routers.demo import CONTENT_SECURITY_POLICY
from tests.conftest import ROOT, SHARED_DATA
from tests.external_tools import tool
from tests.service_helpers import png_bytes, running_app, settings_for

API_KEY = "demo-page-key"
SAMPLE = "/test/sample.png"
SCREENSHOT = ROOT / "tests" / "artifacts" / "demo.png"
SHIPPED = {name: ROOT / "models" / "weights" / name for name in ("irn-x2", "irn-a-x2-second")}


@pytest.fixture(scope="module")
def sample() -> bytes:
    """A 251x197 crop of a real eval photo: odd sizes, so the LR is padded and bicubic must place it right."""
    path = SHARED_DATA / "eval" / "sheep.png"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    with Image.open(path) as im:
        return png_bytes(np.array(im.convert("RGB"))[400:597, 760:1011])


def _server(sample: bytes, **overrides):
    # eager PyTorch: no OpenVINO graphs to convert on a clean machine, and the same files within a code
    app = create_app(settings_for(SHIPPED, backend="torch", **overrides))
    app.add_api_route(SAMPLE, lambda: Response(sample, media_type="image/png"))
    return running_app(app)


@pytest.fixture(scope="module")
def open_url(sample):
    with _server(sample) as base:
        yield base


@pytest.fixture(scope="module")
def keyed_url(sample):
    with _server(sample, api_keys=[API_KEY]) as base:
        yield base


def browse(url: str, screenshot: Path | None = None) -> str:
    """The page's DOM once its requests are answered and its scripts are done."""
    chromium = tool("chromium")
    argv = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars"]
    argv += ["--window-size=1280,1480", "--virtual-time-budget=60000", "--dump-dom"]
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        argv.append(f"--screenshot={screenshot}")
    dom = subprocess.run([*argv, url], capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    return dom.stdout


def shown(dom: str, id_: str) -> str:
    match = re.search(rf'id="{id_}"[^>]*>([^<]*)<', dom)
    assert match, f"no #{id_} in the page"
    return html.unescape(match.group(1))


def canvas_size(dom: str, id_: str) -> tuple[int, int]:
    match = re.search(rf'<canvas id="{id_}" width="(\d+)" height="(\d+)"', dom)
    assert match, f"no canvas #{id_} in the page"
    return int(match.group(1)), int(match.group(2))


def state(dom: str) -> str:
    return re.search(r'<body data-state="([a-z]+)"', dom).group(1)


def decoded(data: bytes) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(data)).convert("RGBA"))[..., :3]


def test_the_page_and_everything_it_loads_come_from_the_service_under_a_strict_policy(open_url):
    with httpx.Client(base_url=open_url, timeout=30) as client:
        root = client.get("/", follow_redirects=False)
        assert (root.status_code, root.headers["location"]) == (307, "/demo")
        assert client.head("/demo").status_code == 200
        page = client.get("/demo")
        assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "default-src 'self'" in CONTENT_SECURITY_POLICY and "script-src 'self';" in CONTENT_SECURITY_POLICY
        assert "unsafe" not in CONTENT_SECURITY_POLICY and "http" not in CONTENT_SECURITY_POLICY
        # nothing inline, so the policy needs no 'unsafe-inline'
        assert not re.search(r"<script(?![^>]*\bsrc=)", page.text) and "style=" not in page.text
        links = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
        assert sorted(links) == ["/demo/demo.css", "/demo/demo.js"]
        texts = [page.text]
        for link, media_type in zip(sorted(links), ["text/css", "text/javascript"], strict=True):
            asset = client.get(link)
            assert asset.status_code == 200 and asset.headers["content-type"] == f"{media_type}; charset=utf-8"
            assert asset.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
            texts.append(asset.text)
        for text in texts:  # no URL of another origin anywhere: no CDN, no fonts, no analytics
            assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), re.findall(r"//\S+", text)
        assert client.get("/demo?sample=/etc/passwd").json()["code"] == "invalid_parameter"  # unknown queries too
        assert '"/demo"' not in client.get("/openapi.json").text


def test_the_page_needs_no_key_where_the_endpoints_do_and_is_counted(keyed_url):
    with httpx.Client(base_url=keyed_url, timeout=30) as client:
        assert client.get("/demo").status_code == 200
        assert client.get("/demo/demo.js").status_code == 200
        assert client.get("/v1/models").status_code == 401
        metrics = client.get("/metrics").text
    assert re.search(r'rescale_requests_total\{endpoint="/demo",status="200"\} [1-9]', metrics)


@pytest.mark.parametrize(
    ("keyed", "mode"),
    [(False, "alpha"), (True, "plain")],
    ids=["no-key-configured-alpha", "key-configured-and-entered-plain"],
)
def test_the_page_shows_the_lr_file_the_restored_image_and_bicubic_with_their_psnr(
    sample, keyed, mode, open_url, keyed_url
):
    base = keyed_url if keyed else open_url
    fragment = f"sample={SAMPLE}&scale=2&mode={mode}&format=png" + (f"&key={API_KEY}" if keyed else "")
    dom = browse(f"{base}/demo#{fragment}", screenshot=SCREENSHOT if mode == "alpha" else None)
    if mode == "alpha":
        print(f"screenshot of the page: {SCREENSHOT}")
    assert state(dom) == "done", shown(dom, "error")

    # what the page showed is what the service answers for the same photo and parameters
    headers = {"X-API-Key": API_KEY} if keyed else {}
    with httpx.Client(base_url=base, timeout=60, headers=headers) as client:
        lr = client.post("/downscale", params={"scale": 2, "mode": mode}, files={"image": ("s.png", sample)})
        assert lr.status_code == 200
        restored = client.post("/upscale", files={"image": ("lr.png", lr.content)})
        assert restored.status_code == 200
    original, lr_rgb, restored_rgb = decoded(sample), decoded(lr.content), decoded(restored.content)
    height, width = original.shape[:2]
    assert canvas_size(dom, "lr-canvas") == (math.ceil(width / 2), math.ceil(height / 2))
    assert canvas_size(dom, "restored-canvas") == canvas_size(dom, "bicubic-canvas") == (width, height)
    assert shown(dom, "lr-size") == f"{math.ceil(width / 2)} × {math.ceil(height / 2)}"
    assert shown(dom, "restored-size") == shown(dom, "original-size") == f"{width} × {height}"
    assert shown(dom, "lr-bytes") == f"{len(lr.content):,}"
    assert shown(dom, "original-bytes") == f"{len(sample):,}"

    # Pillow's bicubic (Keys, a = -0.5) of the LR's RGB at the scale, cropped where the photo was padded
    lr_h, lr_w = lr_rgb.shape[:2]
    bicubic = np.array(Image.fromarray(lr_rgb).resize((lr_w * 2, lr_h * 2), Image.Resampling.BICUBIC))[:height, :width]
    expected_restored, expected_bicubic = psnr_y(restored_rgb, original, 2), psnr_y(bicubic, original, 2)
    page_restored, page_bicubic = float(shown(dom, "psnr-restored")), float(shown(dom, "psnr-bicubic"))
    assert abs(page_restored - expected_restored) < 0.006 and abs(page_bicubic - expected_bicubic) < 0.006
    assert page_restored > page_bicubic + 5, (page_restored, page_bicubic)
    alpha_said = "alpha channel carries the hidden code" in shown(dom, "lr-caption")
    assert alpha_said == (mode == "alpha")


def _service_error(base: str, sample: bytes, params: dict, headers: dict) -> str:
    answer = httpx.post(f"{base}/downscale", params=params, files={"image": ("s.png", sample)}, headers=headers)
    assert answer.status_code >= 400
    body = answer.json()
    return f"/downscale: {answer.status_code} {body['code']}: {body['message']}"


def test_a_wrong_key_shows_the_services_401_message(sample, keyed_url):
    dom = browse(f"{keyed_url}/demo#sample={SAMPLE}&scale=2&mode=alpha&key=not-the-key")
    assert state(dom) == "error"
    expected = _service_error(keyed_url, sample, {"scale": 2, "mode": "alpha"}, {"X-API-Key": "not-the-key"})
    assert expected.startswith("/downscale: 401 unauthorized: missing or unknown API key")
    assert shown(dom, "error") == expected


def test_a_request_the_service_refuses_shows_its_message(sample, open_url):
    dom = browse(f"{open_url}/demo#sample={SAMPLE}&scale=4&mode=metadata&format=png")
    assert state(dom) == "error"
    expected = _service_error(open_url, sample, {"scale": 4, "mode": "metadata", "format": "png"}, {})
    assert expected.startswith("/downscale: 422 unknown_weights: no weights loaded for irn/dlv-irn mode=metadata x4")
    assert shown(dom, "error") == expected


def test_every_file_the_page_serves_is_package_data_so_an_installed_wheel_has_it():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["service"]
    served = sorted(p.relative_to(ROOT / "service").as_posix() for p in (ROOT / "service" / "static").iterdir())
    assert served == ["static/demo.css", "static/demo.html", "static/demo.js"]
    assert all(any(fnmatch.fnmatch(name, pattern) for pattern in patterns) for name in served), (served, patterns)
