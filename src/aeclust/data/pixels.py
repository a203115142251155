"""One image, any kind, into the model's input: a size×size×3 uint8 array.

Every loader ends here, so a JPEG photo, a 16-bit PNG, a transparent GIF and a float array all reach the
model in the same form: RGB, 8 bits, square, ``size`` pixels on a side.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from aeclust.errors import ConfigError

DEFAULT_IMAGE_SIZE = 32

# Pillow can open some forty formats; aeclust reads only these. Naming them also keeps Pillow from handing
# a mislabelled file to a plugin with side effects (EPS, for one, runs Ghostscript).
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".webp")

# Transparent pixels have no colour of their own: what they store is often black or leftover junk, which
# dropping alpha would show. Compositing on white shows them as viewers and web pages usually do, and one
# fixed background keeps images that look alike alike for the autoencoder.
BACKGROUND = (255, 255, 255, 255)
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class UnreadableImageError(Exception):
    """One image file that cannot be decoded; loaders skip it and say so."""


def one_line(error: BaseException) -> str:
    """An exception's message on one line (some span several), or its type's name when it has none."""
    return " ".join(str(error).split()) or type(error).__name__


def check_image_size(image_size: int) -> int:
    """Return ``image_size`` if the models can take it (a multiple of 8, at least 8), else raise ConfigError."""
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
        raise ConfigError(f"image size {image_size!r}: expected an integer multiple of 8, such as 32 or 64")
    if image_size < 8 or image_size % 8:
        raise ConfigError(f"image size {image_size}: expected a multiple of 8 of at least 8, such as 32 or 64")
    return int(image_size)


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode as 8-bit RGB: 16-bit scaled down, alpha composited on white, palettes expanded."""
    if image.mode in SIXTEEN_BIT_MODES:
        # Pillow's own conversion clips 16-bit values at 255 (nearly all white); scale the range instead.
        values = np.asarray(image, dtype=np.float64)
        gray = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, BACKGROUND), rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def fit_square(image: Image.Image, size: int) -> np.ndarray:
    """Centre-crop to a square and resize to size×size (aspect ratio kept, as torchvision's Resize+CenterCrop)."""
    if image.size != (size, size):
        image = ImageOps.fit(image, (size, size), method=Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8)


def read_image(source: str | os.PathLike | bytes, size: int) -> np.ndarray:
    """Decode one image file (a path or its bytes) into a size×size×3 uint8 array.

    Only the first frame of an animation is read, and EXIF orientation is applied. Raises
    :class:`UnreadableImageError` with Pillow's reason for a damaged, truncated or unsupported file.
    """
    stream = io.BytesIO(source) if isinstance(source, bytes) else Path(source)
    try:
        with warnings.catch_warnings():
            # An image past Pillow's pixel limit is far more likely a damaged header than a real picture;
            # decoding it would take gigabytes, so it is skipped like any unreadable file.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(stream, formats=IMAGE_FORMATS) as image:
                if image.format == "JPEG":
                    image.draft(None, (size, size))  # let libjpeg decode a large photo at a fraction of its size
                image.load()  # decode now, inside the try: Image.open reads only the header
                upright = ImageOps.exif_transpose(image)
                return fit_square(to_rgb(upright), size)
    except UnidentifiedImageError:  # its message names a BytesIO object for a member of an archive
        raise UnreadableImageError("not a JPEG, PNG, WebP, BMP or GIF image") from None
    except Exception as error:  # Pillow raises many types for damaged files (OSError, SyntaxError, struct.error...)
        raise UnreadableImageError(one_line(error)) from None


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """N×H×W×3 uint8 images (any H, W) → N×size×size×3, each centre-cropped and resized."""
    if images.shape[1:3] == (size, size):
        return images
    return np.stack([fit_square(Image.fromarray(np.ascontiguousarray(image)), size) for image in images])
