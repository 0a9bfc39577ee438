"""Small real files for the attachment tests (a few hundred bytes each) and a multipart builder."""

from __future__ import annotations

import io
import uuid

from PIL import Image


def image(fmt: str = "PNG", size: tuple[int, int] = (8, 8), color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format=fmt)
    return out.getvalue()


def pdf(text: str = "hello") -> bytes:
    """A minimal well-formed PDF: header, one page, an xref table whose offsets are right."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R >>",
    ]
    stream = f"BT /F1 12 Tf 20 100 Td ({text}) Tj ET".encode()
    objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def multipart(parts: list[tuple[str, str | None, bytes, str]], boundary: str | None = None, preamble: bytes = b"") -> tuple[bytes, str]:
    """``[(field, filename or None, data, content_type)]`` → (body, Content-Type header)."""
    boundary = boundary or uuid.uuid4().hex
    body = bytearray(preamble)
    for field, filename, data, content_type in parts:
        disposition = f'form-data; name="{field}"' + (f'; filename="{filename}"' if filename is not None else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\nContent-Type: {content_type}\r\n\r\n".encode()
        body += data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return bytes(body), f"multipart/form-data; boundary={boundary}"


async def upload(api, person, data: bytes, name: str = "photo.png", content_type: str = "image/png", field: str = "file"):
    body, header = multipart([(field, name, data, content_type)])
    return await api.request("POST", "/api/v1/uploads", body=body, token=person.token, headers={"Content-Type": header})


def stored(raw_db) -> tuple[int, int]:
    """(GridFS files, upload records) in the test's database."""
    return len(list(raw_db["uploads.files"].find({}, {"_id": 1}))), len(list(raw_db["upload_records"].find({}, {"_id": 1})))
