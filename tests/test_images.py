import io

import numpy as np
import pytest
from PIL import Image

from segzero.errors import InputError
from segzero.images import load_image


def _png(img: Image.Image, fmt="PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_missing_file_folder_and_non_image(tmp_path):
    with pytest.raises(InputError, match="Image not found"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(InputError, match="is a folder"):
        load_image(tmp_path)
    (tmp_path / "notes.jpg").write_text("hello")
    with pytest.raises(InputError, match="not an image file"):
        load_image(tmp_path / "notes.jpg")


def test_truncated_image(tmp_path):
    data = _png(Image.new("RGB", (64, 64), (1, 2, 3)), "JPEG")
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated or corrupt"):
        load_image(tmp_path / "cut.jpg")


def test_pixel_cap():
    with pytest.raises(InputError, match="over the limit of 1,000"):
        load_image(_png(Image.new("L", (40, 30))), max_pixels=1000)


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "LA", "I;16", "1"])
def test_modes_become_rgb(mode):
    img = Image.new("RGB", (8, 6), (200, 100, 50)).convert(mode)
    out = load_image(_png(img, "TIFF" if mode == "CMYK" else "PNG"))
    assert out.mode == "RGB" and out.size == (8, 6)


def test_16bit_is_rescaled_not_saturated():
    arr = np.array([[0, 1000], [2000, 4000]], dtype=np.uint16)
    out = np.asarray(load_image(_png(Image.fromarray(arr))))
    assert out[0, 0, 0] == 0 and out[1, 1, 0] == 255 and 0 < out[0, 1, 0] < out[1, 0, 0] < 255


def test_transparent_pixels_become_white():
    img = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert np.asarray(load_image(_png(img)))[0, 0].tolist() == [255, 255, 255]


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    out = load_image(_png(img, "JPEG", exif=exif.tobytes()))
    assert out.size == (20, 40)


def test_array_input():
    arr = np.zeros((5, 7, 3), dtype=np.uint8)
    assert load_image(arr).size == (7, 5)
    with pytest.raises(InputError, match="uint8"):
        load_image(np.zeros((5, 7, 3), dtype=np.float32))


def test_pixel_cap_is_reported_as_too_large_not_corrupt(tmp_path):
    data = _png(Image.new("RGB", (200, 200)))
    (tmp_path / "big.png").write_bytes(data)
    for source in (data, tmp_path / "big.png", io.BytesIO(data)):
        with pytest.raises(InputError) as caught:
            load_image(source, max_pixels=100)
        assert "over the limit of 100" in str(caught.value)
        assert "corrupt" not in str(caught.value) and "decoded" not in str(caught.value)


def test_file_objects_are_read_and_left_open(tmp_path):
    data = _png(Image.new("RGB", (8, 6), (9, 8, 7)))
    stream = io.BytesIO(data)
    assert load_image(stream).size == (8, 6) and not stream.closed
    (tmp_path / "a.png").write_bytes(data)
    with open(tmp_path / "a.png", "rb") as f:
        assert load_image(f).getpixel((0, 0)) == (9, 8, 7)
        assert not f.closed
    with pytest.raises(InputError, match="not an image file"):
        load_image(io.BytesIO(b"not an image"))


@pytest.mark.parametrize("source", [None, 3, 2.5, ["a.png"], object()])
def test_other_types_are_an_input_error(source):
    with pytest.raises(InputError, match="An image must be a path, bytes, a binary file object"):
        load_image(source)


def test_unopenable_paths_are_an_input_error(tmp_path):
    with pytest.raises(InputError, match="could not be opened"):
        load_image(tmp_path / ("x" * 5000))
    with pytest.raises(InputError, match="Image not found"):
        load_image("nul\0byte.png")
