"""Decode one image safely: RGB out, EXIF orientation applied, every failure a clear `ImageError`.

Checks run cheapest first: the file exists and is not empty, PIL identifies it, the format is
supported, the header's width x height is under the pixel limit (decompression bombs are refused
before any pixel is decoded), then the full decode (a truncated file is an error, never a
silently grey-padded image: `ImageFile.LOAD_TRUNCATED_IMAGES` is left False).
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tuneforge.errors import DataError

SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP"})
DEFAULT_MAX_PIXELS = 40_000_000  # decompression-bomb guard
# PIL names some files by a more specific format: JPEGs with a multi-picture index (many phone
# and camera photos) open as MPO.
FORMAT_ALIASES = {"MPO": "JPEG"}
DIGEST_SIZE = 16
DIGEST_DRAFT = (256, 256)  # JPEGs decode at a reduced scale of at least this for digests
_FIX_REMOVE = "Re-export or re-download it, or remove it from the data."


class ImageError(DataError):
    """One image cannot be used; `file` names it and `reason` says why (without the name)."""

    def __init__(self, file: str, reason: str, fix: str) -> None:
        super().__init__(f"{file}: {reason}. {fix}")
        self.file = file
        self.reason = reason
        self.fix = fix


def open_image(
    source: str | Path | bytes, name: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """A fully loaded RGB image; raises `ImageError` (a `DataError`) naming the file."""
    return decode(source, name=name, max_pixels=max_pixels)[0]


def decode(
    source: str | Path | bytes,
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft: tuple[int, int] | None = None,
) -> tuple[Image.Image, tuple[int, int]]:
    """`open_image` plus the stored (width, height) before orientation and any draft reduction.

    `draft` lets JPEGs decode at a reduced DCT scale (at least that size): several times faster,
    and the whole stream is still read, so truncation is still caught.
    """
    label = name or ("the uploaded image" if isinstance(source, bytes) else str(source))
    if isinstance(source, bytes):
        if not source:
            raise ImageError(label, "the file is empty (0 bytes)", _FIX_REMOVE)
        fp = io.BytesIO(source)
    else:
        path = Path(source)
        if not path.is_file():
            what = "is a folder, not an image file" if path.is_dir() else "file not found"
            raise ImageError(label, what, "Check the path.")
        if path.stat().st_size == 0:
            raise ImageError(label, "the file is empty (0 bytes)", _FIX_REMOVE)
        fp = path
    with warnings.catch_warnings():
        # our own pixel check below is the guard; PIL's warning would only duplicate it
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(fp)
        except Image.DecompressionBombError as exc:
            raise _too_many(label, max_pixels, str(exc)) from None
        except UnidentifiedImageError:
            raise ImageError(
                label,
                "not an image, or one too damaged to identify",
                "Check that it opens in an image viewer; re-save it as JPEG or PNG, or remove it.",
            ) from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageError(label, f"cannot read it ({exc})", _FIX_REMOVE) from None
        with image:
            size = image.size
            _check_header(image, label, max_pixels)
            if draft is not None and image.format in ("JPEG", "MPO"):
                image.draft("RGB", draft)
            try:
                image.load()
            except Image.DecompressionBombError as exc:
                raise _too_many(label, max_pixels, str(exc)) from None
            except OSError as exc:
                if "truncated" in str(exc):
                    raise ImageError(
                        label,
                        "the image file is truncated (it ends before the image data does, "
                        "e.g. an interrupted download or copy)",
                        _FIX_REMOVE,
                    ) from None
                raise ImageError(label, f"cannot decode it ({exc})", _FIX_REMOVE) from None
            except (SyntaxError, ValueError, EOFError, IndexError) as exc:
                raise ImageError(label, f"cannot decode it ({exc})", _FIX_REMOVE) from None
            return to_rgb(_oriented(image)), size


def _check_header(image: Image.Image, label: str, max_pixels: int) -> None:
    fmt = FORMAT_ALIASES.get(image.format or "", image.format or "unknown")
    if fmt not in SUPPORTED_FORMATS:
        raise ImageError(
            label,
            f"{fmt} images are not supported (supported: {', '.join(sorted(SUPPORTED_FORMATS))})",
            "Convert it to PNG or JPEG (open and re-save it in an image editor, or "
            "`mogrify -format png FILE` with ImageMagick), or remove it.",
        )
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageError(label, f"the image has zero size ({width}x{height})", _FIX_REMOVE)
    if width * height > max_pixels:
        raise _too_many(label, max_pixels, f"{width}x{height} = {width * height:,} pixels")


def _too_many(label: str, max_pixels: int, what: str) -> ImageError:
    return ImageError(
        label,
        f"too many pixels ({what}; the limit is {max_pixels:,}, a guard against "
        "decompression bombs)",
        "Downscale it (a few megapixels is plenty for classification), or raise the pixel "
        "limit if you trust the file.",
    )


def _oriented(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # a damaged EXIF block only costs the orientation, not the picture
        return image.copy()


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB: transparency composited on white, 16-bit and float grey scaled (PIL would clip)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I", "F") or mode.startswith("I;16"):
        values = np.asarray(image, dtype=np.float64)
        if mode == "F" and values.size and values.max() <= 1.0:
            values = values * 255.0
        elif mode != "F" and (mode.startswith("I;16") or (values.size and values.max() > 255)):
            values = values / 257.0
        grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def image_digest(image: Image.Image) -> str:
    """sha1 of the exact bytes of a 16x16 grey thumbnail (box-averaged) of the decoded pixels.

    Copies of one picture under another name or re-saved losslessly in another format (PNG,
    BMP, lossless WebP) collide; lossy re-encodings and resized copies generally do not.
    Pass images as `open_image` returns them (RGB, orientation applied).
    """
    thumb = image.convert("RGB").resize((DIGEST_SIZE, DIGEST_SIZE), Image.Resampling.BOX)
    return hashlib.sha1(thumb.convert("L").tobytes()).hexdigest()


def source_digest(
    source: str | Path | bytes, name: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> str:
    """`image_digest` of a file or upload exactly as the data set checks compute it.

    JPEGs are decoded at a reduced DCT scale (`DIGEST_DRAFT`, several times faster), which
    changes the thumbnail's last bits: compare these digests with each other, not with
    `image_digest(open_image(...))` of a JPEG.
    """
    return image_digest(decode(source, name=name, max_pixels=max_pixels, draft=DIGEST_DRAFT)[0])


def file_digest(path: str | Path) -> str:
    """sha1 of the file's bytes."""
    sha = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()
