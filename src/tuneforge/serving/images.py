"""Images in requests, for the protocols: read them off the wire, check them against the limits
and decode them off the event loop, with every problem a 4xx that names the image.

An upload is the encoded bytes of one picture (a multipart part, or a base64 string of a JSON
body, data-URLs too). `decode` checks it in a thread of the app's decoding pool, cheapest
first: its size in bytes (413), then from the header alone its format (415 unless JPEG, PNG,
WebP or BMP) and its width x height (413 beyond `Limits.max_image_pixels`, before any pixel is
decoded: decompression bombs), then the full decode (422 for a damaged or truncated file). The
decoded picture is shrunk at once to what the model's evaluation transform reads (what training
evaluated on: `prepare_for_cache`), so a request of large photos holds megabytes, not
gigabytes, while it waits for its forward pass. The model's batcher then gets PIL images.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import os
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from fastapi import HTTPException, Request

from tuneforge.serving.limits import Limits

# The native predict and v2 infer paths (Starlette decodes %2F, so a name never holds '/').
_IMAGE_PATH = re.compile(
    r"^/v1/models/([^/]+)/predict$|^/v2/models/([^/]+)(?:/versions/[^/]+)?/infer$"
)
DECODE_THREADS = max(1, min(4, os.cpu_count() or 1))
MEDIA_HELP = (
    "send multipart/form-data with one part named 'file' per image, or application/json "
    '{"images": ["<base64>", ...]}'
)


def reads_images(served) -> bool:
    """Whether a served model classifies pictures (its inputs are images, not texts)."""
    return served.task.name.startswith("image-")


def image_model_at(scope) -> str | None:
    """The name of the image model a predict or infer request on `scope` goes to, if any."""
    match = _IMAGE_PATH.match(scope.get("path", ""))
    if match is None or scope.get("method") != "POST":
        return None
    name = match.group(1) or match.group(2)
    repository = getattr(getattr(scope.get("app"), "state", None), "repository", None)
    served = repository.get(name) if repository is not None else None
    return name if served is not None and reads_images(served) else None


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def is_json(media: str) -> bool:
    return media in ("", "application/json") or (
        media.startswith("application/") and media.endswith("+json")
    )


@dataclass
class Upload:
    """One image as received: bytes (a file part, binary tensor) or base64 text (JSON)."""

    data: bytes | str
    label: str  # how messages name it: "image 2 ('cat.png')"
    filename: str | None = None


class ImageProblem(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def upload_label(index: int, filename: str | None = None) -> str:
    if filename is None:
        return f"image {index}"
    short = filename if len(filename) <= 80 else filename[:77] + "..."
    return f"image {index} ({short!r})"


def check_count(limits: Limits, n: int) -> None:
    if n == 0:
        raise HTTPException(422, f"No images given: {MEDIA_HELP}.")
    problem = limits.check_images(n)
    if problem:
        raise HTTPException(*problem)


async def read_multipart(request: Request, limits: Limits) -> list[Upload]:
    """The parts named `file` of a multipart body (each a file upload), in order."""
    from contextlib import aclosing

    from starlette.formparsers import MultiPartException, MultiPartParser

    try:
        async with aclosing(request.stream()) as stream:
            parser = MultiPartParser(
                request.headers, stream, max_files=limits.max_images, max_fields=8
            )
            form = await parser.parse()
    except MultiPartException as exc:
        if exc.message.startswith("Too many files"):
            raise HTTPException(
                413,
                f"Too many images: more than {limits.max_images} file parts in one request, "
                f"the limit is {limits.max_images}. Split the request.",
            ) from None
        raise HTTPException(400, f"Invalid multipart body: {exc.message}") from None
    try:
        uploads: list[Upload] = []
        for key, value in form.multi_items():
            if key != "file":
                raise HTTPException(
                    422,
                    f"Unexpected form field {key[:80]!r}: send each image as a part named 'file'.",
                )
            index = len(uploads)
            if isinstance(value, str):
                raise HTTPException(
                    422,
                    f"Part 'file' number {index} is not a file upload (it has no filename): "
                    "send the picture's bytes as a file, e.g. curl -F file=@cat.jpg.",
                )
            label = upload_label(index, value.filename or "")
            if value.size is not None and value.size > limits.max_image_bytes:
                raise HTTPException(413, _too_big(label, value.size, limits))
            uploads.append(Upload(await value.read(), label, value.filename))
        check_count(limits, len(uploads))
        return uploads
    finally:
        await form.close()


def base64_uploads(items: list, limits: Limits, label=upload_label) -> list[Upload]:
    """Uploads of base64 strings (JSON) or raw bytes (binary tensors), their count checked."""
    check_count(limits, len(items))
    return [Upload(item, label(i)) for i, item in enumerate(items)]


def decoder(app) -> ThreadPoolExecutor:
    """The app's pool of decoding threads (bounded: decoded pictures take memory)."""
    pool = getattr(app.state, "image_decoder", None)
    if pool is None:
        pool = app.state.image_decoder = ThreadPoolExecutor(
            DECODE_THREADS, thread_name_prefix="decode-images"
        )
    return pool


async def decode(request: Request, served, uploads: list[Upload]) -> list:
    """PIL images of `uploads`, decoded and checked in the decoding pool; 4xx on a problem."""
    limits = request.app.state.limits
    transform = getattr(getattr(served.model, "tokenizer", None), "transform", None)
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(
            decoder(request.app), decode_all, uploads, limits, transform
        )
    except ImageProblem as exc:
        raise HTTPException(exc.status, exc.message) from None


def decode_all(uploads: list[Upload], limits: Limits, transform=None) -> list:
    """Runs in a decoding thread."""
    out = []
    for upload in uploads:
        data = upload.data
        if isinstance(data, str):
            data = _from_base64(data, upload.label, limits)
        if len(data) > limits.max_image_bytes:
            raise ImageProblem(413, _too_big(upload.label, len(data), limits))
        image = _decode_one(data, upload.label, limits.max_image_pixels)
        if transform is not None:
            from tuneforge.images.transforms import prepare_for_cache

            image = prepare_for_cache(image, transform)
        out.append(image)
    return out


def _too_big(label: str, size: int, limits: Limits) -> str:
    return (
        f"{label} is {size:,} bytes, the limit is {limits.max_image_bytes:,} bytes per image. "
        "Send a smaller (downscaled or more compressed) picture."
    )


_DATA_URL = re.compile(r"^data:([^,;]*)((?:;[^,;]*)*),", re.IGNORECASE)
_SPACE = re.compile(r"\s+")


def _from_base64(text: str, label: str, limits: Limits) -> bytes:
    """The bytes of a base64 string or a base64 data-URL (`data:image/png;base64,...`)."""
    if text[:5].lower() == "data:":
        match = _DATA_URL.match(text[:300])
        if match is None or ";base64" not in match.group(2).lower():
            raise ImageProblem(
                422, f"{label}: a data URL must be base64-encoded (data:image/png;base64,...)."
            )
        text = text[match.end() :]
    if len(text) * 3 // 4 > limits.max_image_bytes + 3:  # before decoding it
        raise ImageProblem(413, _too_big(label, len(text) * 3 // 4, limits))
    text = _SPACE.sub("", text)  # line-wrapped base64 (the `base64` command's output)
    try:
        raw = text.encode("ascii")
        if b"-" in raw or b"_" in raw:  # the URL-safe alphabet, often unpadded
            raw = raw.replace(b"-", b"+").replace(b"_", b"/")
            raw += b"=" * (-len(raw) % 4)
        return base64.b64decode(raw, validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError) as exc:
        raise ImageProblem(
            422,
            f"{label} is not valid base64 ({str(exc)[:100]}): send the file's bytes "
            "base64-encoded.",
        ) from None


def _decode_one(data: bytes, label: str, max_pixels: int):
    """A decoded RGB picture; `ImageProblem` with the status for what is wrong with it."""
    from PIL import Image

    from tuneforge.images.decode import (
        FORMAT_ALIASES,
        SUPPORTED_FORMATS,
        ImageError,
        open_image,
    )

    # The header first, for the statuses: open_image checks the same, with its own messages.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            header = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:  # far beyond PIL's own limit
            found = re.search(r"\((\d+) pixels\)", str(exc))
            pixels = int(found.group(1)) if found else None
            raise ImageProblem(413, _too_many(label, pixels, max_pixels)) from None
        except Exception:  # not an image, or too damaged: open_image says which
            header = None
    if header is not None:
        with header:
            fmt = FORMAT_ALIASES.get(header.format or "", header.format or "unknown")
            width, height = header.size
        if fmt not in SUPPORTED_FORMATS:
            raise ImageProblem(
                415,
                f"{label}: {fmt} images are not supported; send one of "
                f"{', '.join(sorted(SUPPORTED_FORMATS))}.",
            )
        if width * height > max_pixels:
            size = f"{width}x{height} = {width * height:,} pixels"
            raise ImageProblem(413, _too_many(label, size, max_pixels))
    try:
        return open_image(data, name=label, max_pixels=max_pixels)
    except ImageError as exc:
        status = 413 if exc.reason.startswith("too many pixels") else 422
        raise ImageProblem(status, f"{exc.file}: {exc.reason}.") from None
    except Exception as exc:  # a decoder bug on a hostile file is still the file's problem
        raise ImageProblem(422, f"{label}: cannot decode it ({type(exc).__name__}).") from None


def _too_many(label: str, size: str | int | None, max_pixels: int) -> str:
    what = f"{size:,} pixels" if isinstance(size, int) else size or "too many pixels"
    return (
        f"{label}: {what}, over the limit of {max_pixels:,} pixels per image (a guard against "
        "decompression bombs). Downscale it; a few megapixels is plenty for classification."
    )
