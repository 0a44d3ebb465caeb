"""Test images: a lopsided hand-drawn 7, encoded bytes, and PNG headers that lie about their size."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image, ImageDraw


def seven(size: tuple[int, int] = (300, 200), ink: int = 0, paper: int = 255, offset: tuple[int, int] = (150, 20)):
    """A lopsided digit (a 7: top bar and a long diagonal) far from the image's center."""
    image = Image.new("L", size, paper)
    draw = ImageDraw.Draw(image)
    x, y = offset
    draw.line([(x, y), (x + 120, y)], fill=ink, width=14)
    draw.line([(x + 120, y), (x + 40, y + 150)], fill=ink, width=14)
    return image


def png_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny, valid-looking PNG whose header claims ``width``×``height`` pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1024))
        + chunk(b"IEND", b"")
    )
