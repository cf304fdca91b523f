"""/docs and /redoc work with no internet: every asset they link is served by the service itself, and a real
headless browser (Debian's chromium, installed by .ci/run) renders the endpoints."""

import re
import subprocess

import pytest

from tests.external_tools import tool


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_every_asset_of_the_docs_comes_from_the_service(client, page):
    html = client.get(page)
    assert html.status_code == 200
    links = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html.text)
    links += re.findall(r"""url: ?["']([^"']+)["']""", html.text)  # the OpenAPI document
    assert links
    for link in links:
        assert link.startswith("/"), f"{page} links {link}, which is not on the service"
        assert client.get(link).status_code == 200, link
    assert "cdn" not in html.text.lower() and "googleapis" not in html.text


def test_a_headless_browser_renders_the_endpoints(url):
    browser = next((name for name in ("chromium", "chromium-browser") if _which(name)), "chromium")
    chromium = tool(browser)
    dom = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--virtual-time-budget=15000",
            "--dump-dom",
            f"{url}/docs",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    for path in ("/downscale", "/upscale", "/healthz", "/v1/models"):
        assert path in dom.stdout, (path, dom.stdout[-3000:])
    assert "opblock" in dom.stdout  # Swagger UI built its operation blocks: its script ran


def _which(name: str) -> bool:
    import shutil

    return shutil.which(name) is not None
