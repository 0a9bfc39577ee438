"""A customer's photo tells staff nothing but its pixels: EXIF (the phone's GPS position, its make,
the time), XMP and text chunks are stripped from JPEG, PNG and WebP at upload; the orientation the
phone recorded is applied to the pixels first, so the picture still stands the right way up. What is
stored and served is the cleaned file, and its size and sha256 are those of the cleaned file."""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import ExifTags, Image, ImageOps, PngImagePlugin

from uploads_kit import pdf, upload

UPLOADS = "/api/v1/uploads"
XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description xmlns:exif="http://ns.adobe.com/exif/1.0/" exif:GPSLatitude="31,14.0N" exif:GPSLongitude="121,28.0E"/>'
       b"</rdf:RDF></x:xmpmeta>")


def _exif() -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # the phone was held sideways: shown turned 90° clockwise
    exif[ExifTags.Base.Make] = "Apple"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps.update({1: "N", 2: (31.0, 14.0, 0.0), 3: "E", 4: (121.0, 28.0, 0.0)})
    return exif.tobytes()


def photo(fmt: str) -> bytes:
    """40×20, red on the left and blue on the right, with the GPS position of the phone."""
    image = Image.new("RGB", (40, 20), (220, 20, 20))
    image.paste((20, 20, 220), (20, 0, 40, 20))
    out = io.BytesIO()
    extra: dict = {"exif": _exif()}
    if fmt == "JPEG":
        extra.update(xmp=XMP, quality=95)
    if fmt == "PNG":
        text = PngImagePlugin.PngInfo()
        text.add_text("Location", "31.2333N 121.4667E")
        extra["pnginfo"] = text
    image.save(out, format=fmt, **extra)
    return out.getvalue()


def _near(a: tuple, b: tuple, tolerance: int = 40) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a[:3], b[:3]))


@pytest.mark.gen_test(timeout=30)
@pytest.mark.parametrize("fmt, name", [("JPEG", "门头照.jpg"), ("PNG", "shot.png"), ("WEBP", "shot.webp")])
async def test_a_photos_gps_position_and_other_metadata_are_not_kept(api, people, wechat, fmt, name):
    customer, sent = await people.customer(wechat[0]), photo(fmt)
    with Image.open(io.BytesIO(sent)) as original:
        assert original.getexif().get_ifd(ExifTags.IFD.GPSInfo), "the test photo carries a position"
        upright = ImageOps.exif_transpose(original).convert("RGB")

    r = await upload(api, customer, sent, name=name, content_type="application/octet-stream")
    assert r.status == 201, r.body
    made = r.json
    got = await api.get(f"{UPLOADS}/{made['id']}", token=customer.token)
    assert got.status == 200

    served = got.body
    assert b"GPS" not in served and b"Apple" not in served and b"31.2333N" not in served
    with Image.open(io.BytesIO(served)) as image:
        assert image.format == fmt and not image.getexif(), dict(image.getexif())
        assert "xmp" not in image.info and "Location" not in image.info
        assert image.size == upright.size == (20, 40), "the orientation is applied to the pixels"
        pixels = image.convert("RGB")
        for point in ((10, 5), (10, 35)):  # the left (red) half is now on top, the right (blue) below
            assert _near(pixels.getpixel(point), upright.getpixel(point)), (point, pixels.getpixel(point), upright.getpixel(point))
    # what is recorded describes what is stored
    assert made["size"] == len(served) and made["sha256"] == hashlib.sha256(served).hexdigest()
    meta = await api.get(f"{UPLOADS}/{made['id']}/meta", token=customer.token)
    assert meta.json["size"] == len(served) and meta.json["sha256"] == hashlib.sha256(served).hexdigest()


@pytest.mark.gen_test(timeout=30)
async def test_a_pdf_is_stored_as_sent(api, people):
    rep, doc = await people.rep(), pdf("contract")
    r = await upload(api, rep, doc, name="合同.pdf", content_type="application/pdf")
    assert r.status == 201 and r.json["sha256"] == hashlib.sha256(doc).hexdigest() and r.json["size"] == len(doc)
    got = await api.get(f"{UPLOADS}/{r.json['id']}", token=rep.token)
    assert got.body == doc
