"""The pure image code: an original's bytes in, thumbnails' bytes out. No I/O, no globals changed per call.

For each size (a box the longest side fits in): a WebP and a JPEG fallback, without metadata (no EXIF, XMP
or ICC profile is written; images with an ICC profile are converted to sRGB first). The order of operations
is what keeps a 12-megapixel JPEG cheap:

1. ``Image.open`` reads the header only; the pixel count is checked before anything is decoded.
2. ``draft()`` asks the JPEG decoder for a 1/2, 1/4 or 1/8 scale that is still at least as big as the largest
   thumbnail: it must come before anything that loads the image.
3. ``exif_transpose`` (which decodes, at the draft scale), then ``thumbnail()`` to the largest size (a
   reduce, then a LANCZOS resize), then each smaller size from the previous one.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, cast

from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

#: The formats an original may have (what the API's sniffing lets in).
FORMATS: Final = frozenset({"JPEG", "PNG", "WEBP", "GIF"})
#: Encoder settings: good-looking thumbnails at a fraction of the original's size.
WEBP_QUALITY: Final = 80
WEBP_METHOD: Final = 4
JPEG_QUALITY: Final = 85
#: Alpha is flattened onto this for the JPEG fallback.
BACKGROUND: Final = (255, 255, 255)


class CorruptImage(Exception):
    """The original cannot be made into thumbnails, and never will be: a permanent failure."""


class ImageTooLarge(CorruptImage):
    """More pixels than allowed (a decompression bomb, or just too big)."""


@dataclass(frozen=True, slots=True)
class Output:
    """One encoded thumbnail."""

    size: str
    width: int
    height: int
    format: str
    ext: str
    data: bytes


def parse_sizes(spec: str) -> dict[str, int]:
    """``"small=160,medium=480"`` -> ``{"small": 160, "medium": 480}``; ``ValueError`` if malformed."""
    sizes: dict[str, int] = {}
    for part in spec.split(","):
        name, sep, px = part.strip().partition("=")
        if not sep or not name.strip().isidentifier() or not px.strip().isdigit() or not 1 <= int(px) <= 8192:
            raise ValueError(f"thumbnail size {part.strip()!r} is not name=pixels (1 to 8192)")
        sizes[name.strip()] = int(px)
    return sizes


def configure_pillow(max_pixels: int) -> None:
    """Process-wide Pillow limits, for a worker process: a decompression bomb is an error, never a warning."""
    Image.MAX_IMAGE_PIXELS = max_pixels
    warnings.simplefilter("error", Image.DecompressionBombWarning)


def make_thumbnails(data: bytes, sizes: Mapping[str, int], max_pixels: int) -> list[Output]:
    """Thumbnails of ``data`` for every ``sizes`` box, each as WebP and JPEG (largest size first).

    Raises :class:`ImageTooLarge` for more than ``max_pixels`` pixels and :class:`CorruptImage` for anything
    Pillow cannot read (not an image, a truncated file, an unsupported format).
    """
    if not sizes:
        return []
    try:
        im = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"the image has too many pixels: {exc}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise CorruptImage("the file is not an image Pillow can read") from exc
    with im:
        if im.format not in FORMATS:
            raise CorruptImage(f"{im.format} images are not accepted")
        pixels = im.width * im.height
        if pixels > max_pixels:
            raise ImageTooLarge(f"the image is {im.width}x{im.height} ({pixels} pixels), more than {max_pixels}")
        try:
            return _render(im, sizes)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageTooLarge(f"the image has too many pixels: {exc}") from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise CorruptImage(f"the image cannot be decoded: {exc}") from exc


def _render(im: Image.Image, sizes: Mapping[str, int]) -> list[Output]:
    order = sorted(sizes.items(), key=lambda kv: kv[1], reverse=True)
    largest = order[0][1]
    # Animated GIF and WebP: the first frame (Image.open is positioned on it).
    if im.format == "JPEG":
        im.draft("RGB", _fit(im.size, largest))
    icc = im.info.get("icc_profile")
    # Turns the pixels upright when EXIF says so (decoding at the draft scale); otherwise a no-op.
    ImageOps.exif_transpose(im, in_place=True)
    current = _normalise(im)
    current.thumbnail((largest, largest), Image.Resampling.LANCZOS)
    if icc:
        current = _to_srgb(current, icc)
    outputs: list[Output] = []
    for name, box in order:
        if max(current.size) > box:
            current = current.copy()
            current.thumbnail((box, box), Image.Resampling.LANCZOS)
        outputs.extend(_encode(name, current))
    return outputs


def _fit(size: tuple[int, int], box: int) -> tuple[int, int]:
    """The size ``size`` becomes when it fits in a ``box`` square (never enlarged)."""
    w, h = size
    scale = min(1.0, box / max(w, h))
    return max(1, round(w * scale)), max(1, round(h * scale))


def _normalise(im: Image.Image) -> Image.Image:
    """RGB, or RGBA when the image has any transparency (palette transparency included)."""
    if im.mode in ("RGB", "RGBA"):
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and float greyscale: scale to 8 bits instead of clipping at 255.
        lo, hi = (float(v) for v in cast(tuple[float, float], im.getextrema()))
        span = (hi - lo) or 1.0
        return im.point(lambda v: (v - lo) * 255.0 / span).convert("L").convert("RGB")
    alpha = im.mode in ("LA", "La", "PA", "RGBa") or "transparency" in im.info
    return im.convert("RGBA" if alpha else "RGB")


def _to_srgb(im: Image.Image, icc: bytes) -> Image.Image:
    # Dropping a profile without converting would shift the colours of wide-gamut images.
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        out = ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode=im.mode)
    except (ImageCms.PyCMSError, OSError, ValueError):
        return im  # an unreadable profile: keep the pixels as they are
    return out if out is not None else im


def _encode(name: str, im: Image.Image) -> list[Output]:
    # No exif=, icc_profile= or xmp= arguments: nothing of the original's metadata is written.
    webp = io.BytesIO()
    im.save(webp, "WEBP", quality=WEBP_QUALITY, method=WEBP_METHOD)
    flat = im
    if im.mode == "RGBA":
        flat = Image.new("RGB", im.size, BACKGROUND)
        flat.paste(im, mask=im.getchannel("A"))
    jpeg = io.BytesIO()
    flat.save(jpeg, "JPEG", quality=JPEG_QUALITY)
    w, h = im.size
    return [
        Output(name, w, h, "webp", "webp", webp.getvalue()),
        Output(name, w, h, "jpeg", "jpg", jpeg.getvalue()),
    ]
