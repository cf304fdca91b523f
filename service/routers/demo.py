"""GET /demo: a page where a person drops a photo and sees its LR file, the restored image and bicubic side by side.

The page, its script and its style are files of the package (service/static/) served from here, so the page works
offline and its Content-Security-Policy can allow this origin alone. The page needs no key, like /docs; its own
requests to /downscale and /upscale carry the key typed into it.
"""

from pathlib import Path

from fastapi import APIRouter, Response
from fastapi.responses import RedirectResponse

STATIC = Path(__file__).resolve().parents[1] / "static"

# nothing inline and nothing from another origin: the script and style are files served below
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidated, so a new release's page and script arrive together
}

router = APIRouter(include_in_schema=False)


@router.api_route("/", methods=["GET", "HEAD"])
async def root() -> RedirectResponse:
    return RedirectResponse("/demo")


@router.api_route("/demo", methods=["GET", "HEAD"])
async def page() -> Response:
    return Response((STATIC / "demo.html").read_bytes(), media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


@router.get("/demo/demo.js")
async def script() -> Response:
    return _asset("demo.js", "text/javascript")


@router.get("/demo/demo.css")
async def style() -> Response:
    return _asset("demo.css", "text/css")


def _asset(name: str, media_type: str) -> Response:
    return Response((STATIC / name).read_bytes(), media_type=f"{media_type}; charset=utf-8", headers=PAGE_HEADERS)
