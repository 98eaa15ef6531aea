"""worker.thumbnails.imaging: bytes in, thumbnails out (no services)."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image

from shared.storage import sniff
from tests.support import images as gen
from worker.thumbnails.imaging import CorruptImage, ImageTooLarge, Output, make_thumbnails, parse_sizes

SIZES = {"small": 40, "large": 120}
MAX_PIXELS = 50_000_000


def by(outputs: list[Output], size: str, fmt: str) -> Image.Image:
    out = next(o for o in outputs if o.size == size and o.format == fmt)
    im = Image.open(io.BytesIO(out.data))
    assert im.size == (out.width, out.height)
    return im


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_comes_out_upright(orientation: int) -> None:
    # Given a JPEG stored rotated/flipped, with the EXIF orientation that shows it upright
    data = gen.jpeg_with_orientation(orientation)
    # When thumbnails are made
    outputs = make_thumbnails(data, SIZES, MAX_PIXELS)
    # Then each is landscape with the quadrants where they belong
    for fmt in ("webp", "jpeg"):
        im = by(outputs, "large", fmt).convert("RGB")
        assert im.size == (120, 80)
        assert gen.close_to(gen.color_at(im, 0.25, 0.25), gen.RED)
        assert gen.close_to(gen.color_at(im, 0.75, 0.25), gen.GREEN)
        assert gen.close_to(gen.color_at(im, 0.25, 0.75), gen.BLUE)
        assert gen.close_to(gen.color_at(im, 0.75, 0.75), gen.YELLOW)


def test_a_large_rotated_jpeg_is_drafted_and_fits_the_box_upright() -> None:
    # Given a JPEG stored as 1600x2400 pixels, shown as 2400x1600 by its EXIF orientation 6
    data = gen.jpeg_with_orientation(6, 2400, 1600)
    assert Image.open(io.BytesIO(data)).size == (1600, 2400)
    # When thumbnails are made for a 1024 box (the decoder drafts at 1/2 scale first)
    outputs = make_thumbnails(data, {"large": 1024, "small": 160}, MAX_PIXELS)
    # Then they are landscape, upright, and fit their boxes
    assert [(o.size, o.width, o.height) for o in outputs if o.format == "webp"] == [
        ("large", 1024, 683),
        ("small", 160, 107),
    ]
    assert gen.close_to(gen.color_at(by(outputs, "small", "jpeg"), 0.25, 0.25), gen.RED)


def test_every_size_gets_a_webp_and_a_jpeg_fallback() -> None:
    outputs = make_thumbnails(gen.jpeg(), {"small": 40, "medium": 80, "large": 120}, MAX_PIXELS)
    assert [(o.size, o.format) for o in outputs] == [
        ("large", "webp"),
        ("large", "jpeg"),
        ("medium", "webp"),
        ("medium", "jpeg"),
        ("small", "webp"),
        ("small", "jpeg"),
    ]
    assert [Image.open(io.BytesIO(o.data)).format for o in outputs] == ["WEBP", "JPEG"] * 3


def test_a_small_image_is_never_enlarged() -> None:
    outputs = make_thumbnails(gen.jpeg(36, 24), SIZES, MAX_PIXELS)
    assert {(o.width, o.height) for o in outputs} == {(36, 24)}


def test_metadata_is_stripped() -> None:
    # Given a JPEG with EXIF (camera make, orientation) and an ICC profile
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    im = Image.open(io.BytesIO(gen.jpeg_with_orientation(6)))
    data = gen.encode(im, "JPEG", exif=im.getexif().tobytes(), icc_profile=icc)
    # When thumbnails are made
    outputs = make_thumbnails(data, SIZES, MAX_PIXELS)
    # Then no output carries EXIF, an ICC profile or XMP
    for out in outputs:
        thumb = Image.open(io.BytesIO(out.data))
        assert len(thumb.getexif()) == 0, out
        assert not {"exif", "icc_profile", "xmp"} & set(thumb.info), out
        assert b"Stockroom Test Camera" not in out.data


def test_png_alpha_is_kept_in_webp_and_flattened_on_white_in_jpeg() -> None:
    outputs = make_thumbnails(gen.png_rgba(), SIZES, MAX_PIXELS)
    webp = by(outputs, "large", "webp")
    assert webp.mode == "RGBA"
    assert webp.getpixel((10, 10))[3] == 0  # type: ignore[index]
    assert gen.close_to(gen.color_at(webp, 0.75, 0.5), (255, 0, 0, 255))
    jpeg = by(outputs, "large", "jpeg")
    assert jpeg.mode == "RGB"
    assert gen.close_to(gen.color_at(jpeg, 0.25, 0.5), (255, 255, 255))
    assert gen.close_to(gen.color_at(jpeg, 0.75, 0.5), (255, 0, 0))


def test_palette_png_with_transparency_becomes_rgba() -> None:
    outputs = make_thumbnails(gen.png_palette(transparent=True), SIZES, MAX_PIXELS)
    webp = by(outputs, "large", "webp")
    assert webp.mode == "RGBA"
    assert webp.getpixel((5, 5))[3] == 0  # type: ignore[index]
    assert gen.close_to(gen.color_at(webp, 0.75, 0.5), (0, 0, 255, 255))


def test_palette_png_without_transparency_becomes_rgb() -> None:
    outputs = make_thumbnails(gen.png_palette(transparent=False), SIZES, MAX_PIXELS)
    webp = by(outputs, "large", "webp")
    assert webp.mode == "RGB"
    assert gen.close_to(gen.color_at(webp, 0.25, 0.5), (255, 255, 255))


def test_animated_gif_gives_its_first_frame() -> None:
    outputs = make_thumbnails(gen.gif_animated(), SIZES, MAX_PIXELS)
    for fmt in ("webp", "jpeg"):
        im = by(outputs, "large", fmt)
        assert getattr(im, "n_frames", 1) == 1
        assert gen.close_to(gen.color_at(im.convert("RGB"), 0.5, 0.5), gen.RED)


def test_webp_original() -> None:
    outputs = make_thumbnails(gen.webp(), SIZES, MAX_PIXELS)
    assert gen.close_to(gen.color_at(by(outputs, "large", "jpeg"), 0.25, 0.25), gen.RED)


def test_truncated_jpeg_is_a_corrupt_image() -> None:
    with pytest.raises(CorruptImage, match="cannot be decoded"):
        make_thumbnails(gen.truncated_jpeg(), SIZES, MAX_PIXELS)


def test_bytes_that_are_no_image_are_a_corrupt_image() -> None:
    with pytest.raises(CorruptImage, match="not an image"):
        make_thumbnails(gen.not_an_image(), SIZES, MAX_PIXELS)


def test_pixel_bomb_is_refused_before_decoding() -> None:
    # Given a 300-byte PNG that claims 3.6 gigapixels
    data = gen.pixel_bomb()
    started = time.perf_counter()
    # Then it is refused as too large, at once
    with pytest.raises(ImageTooLarge):
        make_thumbnails(data, SIZES, MAX_PIXELS)
    assert time.perf_counter() - started < 1


def test_an_image_over_the_configured_pixel_limit_is_too_large() -> None:
    # 2000x1000 is under Pillow's own limit but over ours
    with pytest.raises(ImageTooLarge, match="2000x1000"):
        make_thumbnails(gen.pixel_bomb(2000, 1000), SIZES, 1_000_000)


def test_parse_sizes() -> None:
    assert parse_sizes("small=160, medium=480,large=1024") == {"small": 160, "medium": 480, "large": 1024}
    for bad in ("small", "small=0", "small=x", "=10", "a-b=10"):
        with pytest.raises(ValueError, match="not name=pixels"):
            parse_sizes(bad)


@pytest.mark.parametrize(
    ("data", "ext"),
    [
        (gen.jpeg(), "jpg"),
        (gen.png_rgba(), "png"),
        (gen.webp(), "webp"),
        (gen.gif_animated(), "gif"),
        (gen.not_an_image(), None),
        (b"RIFF\x00\x00\x00\x00WAVE", None),
        (b"", None),
    ],
)
def test_sniff_reads_the_magic_number(data: bytes, ext: str | None) -> None:
    assert sniff(data[:12]) == ext
