"""Photos from phones and strangers: read them right, or refuse them in one clear line.

Decisions (also in docs/reliability.md):

* Formats read: JPEG (incl. MPO from phones), PNG, WebP, GIF, BMP, TIFF. Others (HEIC, EPS, PSD, ...) are
  refused; Pillow is never allowed to guess other formats (EPS would run Ghostscript).
* EXIF orientation is applied (``ImageOps.exif_transpose``); a corrupt EXIF block is ignored (warning).
* Transparency (RGBA, LA, PA, palette with tRNS) is composited over white.
* CMYK is converted with its embedded ICC profile when there is one, else Pillow's conversion.
* 16-bit grey (I;16*) and 32-bit int (I) are scaled from 0..65535 to 0..255 (not clipped); float (F)
  images are read as 0..1 when their maximum is <= 1, else 0..255 (clipped).
* Animated GIF/WebP/PNG are refused (which frame would be "the photo"?) unless ``allow_animated=True``,
  which takes the first frame with a warning. Multi-picture JPEGs (MPO) use their primary picture.
* Decompression bombs: more than ``max_pixels`` (64 MP) declared pixels is refused before decoding, and
  Pillow's DecompressionBombWarning is an error.
* Truncated, corrupt, zero-byte or non-image files are refused, naming the file; truncated images are
  never silently padded (``ImageFile.LOAD_TRUNCATED_IMAGES`` is forced off while reading).
* Images with a short side under ``min_size`` px (default 32, the world model's size) are refused.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np

from .errors import OnewordError
from .safeio import read_regular_file

IMAGE_EXTS = (".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".mpo")
UNSUPPORTED_IMAGE_EXTS = (
    ".heic",
    ".heif",
    ".avif",
    ".jxl",
    ".raw",
    ".dng",
    ".cr2",
    ".nef",
    ".arw",
    ".psd",
    ".svg",
    ".eps",
    ".ico",
)
PIL_FORMATS = ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"]  # JPEG also opens MPO (phones)
MAX_PIXELS = 64_000_000
MAX_FILE_BYTES = 512 << 20


def load_image(path: str | Path, min_size: int = 32, max_pixels: int = MAX_PIXELS, allow_animated: bool = False):
    """Read a photo as an 8-bit RGB PIL image, upright, transparency over white; see the module doc."""
    from PIL import Image, ImageFile

    path = Path(path)
    data = read_regular_file(path, MAX_FILE_BYTES, "an image", "too big for a photo")
    Image.init()  # register every plugin so that `formats=` can name them
    old_truncated = ImageFile.LOAD_TRUNCATED_IMAGES
    try:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                im = Image.open(io.BytesIO(data), formats=PIL_FORMATS)
            except Image.UnidentifiedImageError:
                raise OnewordError(
                    f"{path} is not an image oneword can read ({_what_is(data)}; use JPEG, PNG, WebP, GIF, BMP or TIFF)"
                ) from None
            except (Image.DecompressionBombError, Image.DecompressionBombWarning):
                raise OnewordError(f"{path} declares an enormous size (decompression bomb?); refused") from None
            w, h = im.size
            if w * h > max_pixels:
                raise OnewordError(
                    f"{path} is {w}x{h} = {w * h / 1e6:.0f} MP, over the {max_pixels / 1e6:.0f} MP "
                    "limit (decompression-bomb guard); downscale it first"
                )
            if w <= 0 or h <= 0:
                raise OnewordError(f"{path} has no pixels ({w}x{h})")
            frames = getattr(im, "n_frames", 1)
            if frames > 1 and im.format != "MPO":
                if not allow_animated:
                    raise OnewordError(
                        f"{path} is animated ({frames} frames); export the frame you want as PNG or JPEG"
                    )
                warnings.warn(f"{path} is animated ({frames} frames); using the first frame", stacklevel=2)
            im.seek(0)
            im.load()
            im = _upright(im, path)
            rgb = _to_rgb(im, path)
    except OnewordError:
        raise
    except Image.DecompressionBombWarning:
        raise OnewordError(f"{path} declares an enormous size (decompression bomb?); refused") from None
    except MemoryError:
        raise OnewordError(f"{path}: not enough memory to decode it") from None
    except Exception as e:  # Pillow raises OSError/SyntaxError/ValueError/struct.error/... on bad files
        why = str(e).splitlines()[0][:100] if str(e) else type(e).__name__
        raise OnewordError(f"{path} is corrupt or truncated ({why})") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old_truncated
    if min(rgb.size) < min_size:
        raise OnewordError(
            f"{path} is {rgb.size[0]}x{rgb.size[1]} px; photos need at least {min_size} px on the short side"
        )
    return rgb


def _what_is(data: bytes) -> str:
    head = data[:16]
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftyphevc", b"ftypmsf1"):
        return "it is HEIC/HEIF; export it as JPEG"
    if head[4:12] == b"ftypavif":
        return "it is AVIF"
    if head.startswith((b"%PDF", b"%!PS")):
        return "it is a PDF/PostScript document"
    if head.startswith(b"PK\x03\x04"):
        return "it is a zip archive"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "it looks like text"
    return "unrecognised content"


def _upright(im, path):
    from PIL import ImageOps

    try:
        out = ImageOps.exif_transpose(im)
        return out if out is not None else im
    except Exception as e:  # a corrupt EXIF block should not lose the photo
        warnings.warn(
            f"{path}: EXIF orientation unreadable ({type(e).__name__}); using the image as stored", stacklevel=3
        )
        return im


def _over_white(rgba):
    from PIL import Image

    bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(bg, rgba).convert("RGB")


def _to_rgb(im, path):
    from PIL import Image

    mode = im.mode
    if mode == "RGB":
        return im.copy()
    if (
        mode in ("RGBA", "RGBa", "LA", "La", "PA")
        or (mode == "P" and "transparency" in im.info)
        or (mode in ("L", "RGB", "1") and "transparency" in im.info)
    ):
        return _over_white(im.convert("RGBA"))
    if mode == "CMYK":
        icc = im.info.get("icc_profile")
        if icc:
            try:
                from PIL import ImageCms

                src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
                return ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
            except Exception:  # bad/unsupported profile: fall back to Pillow's conversion
                pass
        return im.convert("RGB")
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(im).astype(np.float64)
        top = 65535.0 if a.max(initial=0) <= 65535 else float(a.max())
        a = np.clip(a, 0, None) / top * 255.0
        return Image.fromarray(np.rint(a).astype(np.uint8), "L").convert("RGB")
    if mode == "F":
        a = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        scale = 255.0 if a.max(initial=0) <= 1.0 else 1.0
        return Image.fromarray(np.rint(np.clip(a * scale, 0, 255)).astype(np.uint8), "L").convert("RGB")
    return im.convert("RGB")  # L, 1, P, YCbCr, LAB, HSV, RGBX, ...


def skipped_files(folder: str | Path) -> list[Path]:
    """Files in ``folder`` that look like photos but are in a format oneword cannot read (HEIC, RAW, ...), which
    :func:`list_photos` leaves out."""
    try:
        return sorted(
            p
            for p in Path(folder).iterdir()
            if not p.name.startswith(".") and p.suffix.lower() in UNSUPPORTED_IMAGE_EXTS and p.is_file()
        )
    except OSError:
        return []


def list_photos(folder: str | Path, min_count: int = 1) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name.

    Hidden files (".name") and other files (.txt captions, .json) are skipped silently; symlinks that
    point outside the folder, or nowhere, are refused. Too few images: an error that says what was found.
    """
    folder = Path(folder)
    if not folder.exists():
        raise OnewordError(f"photo folder {folder} does not exist")
    if not folder.is_dir():
        raise OnewordError(f"{folder} is not a folder (give the folder that holds the photos)")
    root = folder.resolve()
    try:
        entries = sorted(folder.iterdir(), key=lambda p: p.name)
    except OSError as e:
        raise OnewordError(f"cannot list {folder}: {e.strerror or e}") from None
    photos, others, unsupported, subdirs = [], [], [], 0
    for p in entries:
        if p.name.startswith("."):
            continue
        ext = p.suffix.lower()
        if p.is_symlink():
            try:
                target = p.resolve(strict=True)
            except (OSError, RuntimeError):
                raise OnewordError(f"{p} is a broken symlink") from None
            if not target.is_relative_to(root):
                raise OnewordError(f"{p} is a symlink to {target}, outside {folder}; copy the photo in instead")
        if p.is_dir():
            subdirs += 1
            continue
        if ext in IMAGE_EXTS:
            photos.append(p)
        elif ext in UNSUPPORTED_IMAGE_EXTS:
            unsupported.append(p)
        else:
            others.append(p)
    if len(photos) < max(1, min_count):
        found = []
        if unsupported:
            kinds = sorted({p.suffix.lower() for p in unsupported})
            found.append(f"{len(unsupported)} {'/'.join(kinds)} file(s) oneword cannot read (export as JPEG/PNG)")
        if others:
            kinds = sorted({p.suffix.lower() or "no-extension" for p in others})
            found.append(f"{len(others)} other file(s) ({', '.join(kinds[:6])})")
        if subdirs:
            found.append(f"{subdirs} sub-folder(s) (not searched)")
        what = "; ".join(found) if found else "nothing"
        if photos:
            raise OnewordError(f"{folder} has {len(photos)} photo(s); at least {min_count} needed (also found: {what})")
        raise OnewordError(f"no photos in {folder} (JPEG, PNG, WebP, GIF, BMP, TIFF); found {what}")
    return photos
