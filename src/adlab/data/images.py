"""Decoding one image file: grey or RGB, resized on decode, and what a file that cannot be decoded means."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np


def read_image(path: str | Path, channels: int, hw: tuple[int, int] | None = None) -> np.ndarray:
    """One image file as uint8 [H, W] (channels 1) or [H, W, 3], resized to hw = (height, width)
    when given. PIL's errors propagate (see `unreadable` for saying what they mean)."""
    from PIL import Image

    with Image.open(path) as img:
        return as_array(img, channels, hw)


def unreadable(path: str | Path, exc: BaseException) -> str:
    """`path: why it cannot be read` for an exception raised while opening or decoding an image.

    PIL refuses an image of more than 2 x Image.MAX_IMAGE_PIXELS pixels with DecompressionBombError
    (not an OSError): a small file that would decode to gigabytes. Other files it cannot decode
    (truncated, corrupt, not an image) raise OSError, ValueError, SyntaxError and, for some crafted
    files, other exceptions; callers catch Exception around decoding for that reason.
    """
    from PIL import Image

    if isinstance(exc, Image.DecompressionBombError):
        numbers = [int(n) for n in re.findall(r"\d+", str(exc))]
        size = f"{numbers[0]:,} pixels" if numbers else "too many pixels"
        limit = f" (the limit is {numbers[1]:,})" if len(numbers) > 1 else ""
        return f"{path}: image too large to decode: {size}{limit}, a possible decompression bomb"
    reason = (str(exc).splitlines() or [""])[0]
    return f"{path}: cannot read image ({type(exc).__name__}{': ' + reason if reason else ''})"


def as_array(img, channels: int, hw: tuple[int, int] | None) -> np.ndarray:
    """An open PIL image converted to grey (channels 1) or RGB and resized to hw when given."""
    from PIL import Image

    img = img.convert("L" if channels == 1 else "RGB")
    if hw is not None and img.size != (hw[1], hw[0]):
        img = img.resize((hw[1], hw[0]), Image.Resampling.BILINEAR)
    return np.asarray(img)


def is_grey(img) -> bool:
    """Whether an open PIL image is grey: a grey mode, or a palette of grey entries only."""
    return img.mode in ("1", "L", "I", "I;16", "F") or (img.mode == "P" and _palette_is_grey(img))


def _palette_is_grey(img) -> bool:
    palette = img.getpalette() or []
    triples = [palette[i : i + 3] for i in range(0, len(palette), 3)]
    return all(r == g == b for r, g, b in triples)
