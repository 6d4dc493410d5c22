"""Upload validation: every bad upload becomes a RequestError with a message, every odd mode an RGB image."""

import numpy as np
import PIL.Image
import pytest

from mtu.serve import RequestError, ServeLimits, load_upload, mask_from_layers

LIMITS = ServeLimits(max_side=64, max_bytes=20_000)


def _save(tmp_path, name, image, **kwargs):
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


@pytest.mark.parametrize(
    "mode, make",
    [
        ("RGB", lambda: PIL.Image.new("RGB", (8, 6), (10, 20, 30))),
        ("RGBA", lambda: PIL.Image.new("RGBA", (8, 6), (200, 0, 0, 0))),  # fully transparent -> white
        ("LA", lambda: PIL.Image.new("LA", (8, 6), (0, 255))),
        ("L", lambda: PIL.Image.new("L", (8, 6), 77)),
        ("1", lambda: PIL.Image.new("1", (8, 6), 1)),
        ("P", lambda: PIL.Image.new("RGB", (8, 6), (0, 0, 255)).convert("P")),
        ("I;16", lambda: PIL.Image.fromarray(np.full((6, 8), 65535, np.uint16))),
        ("CMYK", lambda: PIL.Image.new("CMYK", (8, 6), (0, 0, 0, 0))),
    ],
)
def test_odd_modes_are_converted_to_rgb(tmp_path, mode, make):
    image = make()
    assert image.mode == mode
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    out = load_upload(_save(tmp_path, f"in.{fmt.lower()}", image, format=fmt), LIMITS)
    assert out.mode == "RGB" and out.size == (8, 6)
    expected = {
        "RGBA": (255, 255, 255),
        "LA": (0, 0, 0),
        "L": (77, 77, 77),
        "1": (255, 255, 255),
        "P": (0, 0, 255),
        "I;16": (255, 255, 255),
        "RGB": (10, 20, 30),
    }
    if mode in expected:
        assert out.getpixel((3, 3)) == expected[mode]


def test_transparent_palette_and_animation_are_flattened(tmp_path):
    frames = [PIL.Image.new("P", (8, 8), 1), PIL.Image.new("P", (8, 8), 2)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], transparency=1)
    out = load_upload(path, LIMITS)
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (255, 255, 255)  # frame 0, transparent -> white


def test_pil_images_are_checked_and_converted():
    assert load_upload(PIL.Image.new("RGBA", (4, 4)), LIMITS).mode == "RGB"
    with pytest.raises(RequestError, match="65x10 pixels; the limit is 64"):
        load_upload(PIL.Image.new("RGB", (65, 10)), LIMITS)


@pytest.mark.parametrize(
    "name, write, message",
    [
        ("notes.png", lambda p: p.write_text("hello"), "notes.png is not an image"),
        ("empty.png", lambda p: p.write_bytes(b""), "is not an image"),
        ("wide.png", lambda p: PIL.Image.new("RGB", (65, 4)).save(p), "65x4 pixels; the limit is 64 pixels a side"),
        ("big.bmp", lambda p: PIL.Image.new("RGB", (84, 84)).save(p), "big.bmp is 21 KB; the limit is 20 KB"),
        ("cut.png", lambda p: p.write_bytes(_png_bytes()[:-40]), "could not be decoded"),
    ],
)
def test_bad_uploads_get_a_message(tmp_path, name, write, message):
    path = tmp_path / name
    write(path)
    with pytest.raises(RequestError, match=message) as info:
        load_upload(path, LIMITS)
    assert str(tmp_path) not in str(info.value)  # no server paths in what the user reads


def png_header(width: int, height: int) -> bytes:
    """A PNG of `width` x `height` 1-bit pixels that holds only its header: a decompression bomb in 45 bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def test_a_bomb_upload_is_called_too_large(tmp_path):  # issue 31: it was "not an image this server reads"
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header(100_000, 100_000))
    with pytest.raises(RequestError, match=r"bomb.png is too large \(10,000,000,000 pixels\); the limit is 64 pixels"):
        load_upload(path, LIMITS)


def test_a_missing_upload_gets_a_message(tmp_path):
    with pytest.raises(RequestError, match="did not arrive"):
        load_upload(tmp_path / "gone.png", LIMITS)


def _png_bytes() -> bytes:
    import io

    buffer = io.BytesIO()
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_mask_from_layers_unites_strokes_and_resizes():
    first, second = PIL.Image.new("RGBA", (8, 8)), PIL.Image.new("RGBA", (16, 16))
    first.putpixel((1, 1), (255, 0, 255, 255))
    second.paste((255, 0, 255, 128), (8, 8, 16, 16))  # half-transparent stroke, on a 2x larger canvas
    mask = mask_from_layers([first, None, second], (8, 8))
    values = np.asarray(mask)
    assert mask.mode == "L" and values.shape == (8, 8)
    assert values[1, 1] == 255 and values[4:, 4:].min() == 255 and values[0, 0] == 0


def test_no_strokes_is_no_mask():
    assert mask_from_layers(None, (8, 8)) is None
    assert mask_from_layers([PIL.Image.new("RGBA", (8, 8))], (8, 8)) is None
