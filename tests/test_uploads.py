"""How an image arrives: one multipart file part under any name, or the raw body; over real HTTP on loopback."""

import pytest

from tests.service_helpers import png_bytes

DOWNSCALE = {"scale": 2, "mode": "plain"}
FILE_PART = "a file part named 'image' or 'file'"
TOO_MANY_FILES = {
    "code": "too_many_files",
    "message": f"the multipart body has more than one file part: send one image per request, as {FILE_PART}",
}


@pytest.mark.parametrize("field", ["image", "file", "photo"])
def test_one_file_part_under_any_name_gives_what_the_raw_body_gives(client, photo, field):
    data = png_bytes(photo)
    raw = client.post("/downscale", content=data, params=DOWNSCALE, headers={"content-type": "image/png"})
    form = client.post("/downscale", files={field: ("photo.png", data, "image/png")}, params=DOWNSCALE)
    assert raw.status_code == 200 and form.status_code == 200, form.text
    assert form.content == raw.content
    assert form.headers["x-rescale-original-size"] == "70x90"


def test_text_fields_beside_the_file_part_are_ignored(client, photo):
    files = {"file": ("photo.png", png_bytes(photo), "image/png")}
    response = client.post("/downscale", files=files, data={"note": "holiday"}, params=DOWNSCALE)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("names", [("image", "file"), ("image", "image"), ("a", "b", "c")])
def test_more_than_one_file_part_is_a_400_saying_to_send_one(client, photo, names):
    data = png_bytes(photo)
    files = [(name, (f"{name}.png", data, "image/png")) for name in names]
    response = client.post("/downscale", files=files, params=DOWNSCALE)
    assert response.status_code == 400
    assert response.json() == TOO_MANY_FILES


def test_upscale_takes_the_same_multipart_bodies(client, photo):
    small = client.post("/downscale", files={"file": ("p.png", png_bytes(photo))}, params=DOWNSCALE).content
    assert client.post("/upscale", files={"upload": ("small.png", small, "image/png")}).status_code == 200
    both = [("image", ("a.png", small, "image/png")), ("file", ("b.png", small, "image/png"))]
    response = client.post("/upscale", files=both)
    assert response.status_code == 400 and response.json() == TOO_MANY_FILES


def test_a_multipart_body_without_a_file_part_names_the_fields(client):
    # a part without a filename is a text field (`curl -F 'image=<photo.png'`), not a file
    response = client.post("/downscale", files={"image": (None, b"not a file")}, params=DOWNSCALE)
    assert response.status_code == 422
    assert response.json() == {
        "code": "missing_image",
        "message": f"the multipart body has no file part: send the image as {FILE_PART}",
    }


def test_a_malformed_multipart_body_is_a_400(client):
    response = client.post("/downscale", content=b"x", headers={"content-type": "multipart/form-data"})
    assert response.status_code == 400
    assert response.json() == {
        "code": "bad_multipart",
        "message": f"Missing boundary in multipart: send the image as {FILE_PART}",
    }


def test_openapi_describes_the_file_part(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/downscale", "/upscale"):
        schema = paths[path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
        assert set(schema["properties"]) == {"image", "file"}
        assert (schema["minProperties"], schema["maxProperties"]) == (1, 1)
        assert "any other name" in schema["description"]
