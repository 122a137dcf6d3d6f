"""Reading and writing image files for upscaling, without losing what the user had.

Reading gives a numpy array in the file's own precision and layout (uint8 or uint16;
HxW grey, HxWx2 grey+alpha, HxWx3 RGB, HxWx4 RGBA) plus :class:`ImageMeta` (ICC
profile, EXIF). EXIF orientation is applied to the pixels, and the orientation tag is
reset to 1 so viewers don't rotate the output a second time. Only descriptive EXIF is
kept: a TIFF's IFD0 is its EXIF to Pillow, and carrying its layout tags (width, strips,
bits per sample...) into an output would describe the input's pixels, not the output's.

Accepted pixel values: uint8 and uint16 as stored; float ("F", 32-bit grey TIFF) must be
finite and within [0, 1], the library's float convention; 32-bit integer grey ("I") is
read as 16-bit when every value is within 0..65535 (Pillow hands out some 16-bit files
that way) and refused otherwise, since no scale for it would be a guess. Values outside
these ranges are an error naming the file, never clipped. :func:`read_image` gives the first
frame of animated and multi-page files (:attr:`ImageMeta.frames` says how many there were);
:func:`read_frames` gives every frame of an animated GIF, PNG (APNG) or WebP as a full canvas,
with its display times, and :func:`write_animation` writes such frames as an animated PNG or WebP.

Pillow reads 16-bit colour PNG and TIFF as 8-bit, so those pixels come from pypng and
tifffile instead; Pillow still parses their metadata.

Phone formats: AVIF is read and written by Pillow (11.3+ wheels carry libavif; 8 bits per
channel, read and written; an animated AVIF is read frame by frame). HEIC/HEIF, the iPhone's
camera format, needs the optional ``pillow-heif`` package (``pip install 'surge-sr[heif]'``; kept
out of the core install because its wheels bundle the GPL x265 encoder); 10- and 12-bit HEIC is
read as 16-bit, and 16-bit pixels are written as 10-bit HEIC (8-bit ones as 8-bit). Both
formats' rotation (``irot``/``imir``) is applied like EXIF orientation. A file of either kind
that the installed libraries cannot open is an error that names the package it needs.

Every failure is a :class:`~surge.errors.ImageReadError` or
:class:`~surge.errors.ImageWriteError` whose one-line message starts with the path.
Writes go to a temporary file in the destination folder and are published under the
final name only once complete (:func:`surge.atomic.publish`), so a crash never leaves a
half-written image; with ``overwrite=False`` a file that appeared there meanwhile is
never replaced.

The package, by concern: ``formats`` (extensions, output formats, limits), ``pixels`` (PIL
image <-> array), ``metadata`` (:class:`ImageMeta`, EXIF, ICC, JPEG quality), ``reading``,
``writing`` (atomic publish), ``animation`` (frames in, animated PNG/WebP out), ``heif``
(AVIF/HEIC availability and high-bit-depth HEIF). Every public name is importable from
``surge.inference.image_io`` itself.
"""

from __future__ import annotations

from surge.inference.image_io.formats import (
    IMAGE_EXTENSIONS,
    OUTPUT_FORMATS,
    DEFAULT_MAX_PIXELS,
    JPEG_QUALITY,
    ANIMATED_INPUT_FORMATS,
    ANIMATED_OUTPUT_FORMATS,
    DEFAULT_FRAME_MS,
    output_format,
)
from surge.inference.image_io.heif import (
    heif_available,
    avif_available,
)
from surge.inference.image_io.pixels import (
    PixelValueError,
    pil_to_array,
    array_to_pil,
    orient_array,
    quantise,
)
from surge.inference.image_io.metadata import (
    ImageMeta,
    jpeg_quality,
)
from surge.inference.image_io.reading import (
    read_image,
)
from surge.inference.image_io.writing import (
    ensure_output_dir,
    check_writable_dir,
    write_image,
)
from surge.inference.image_io.animation import (
    read_frames,
    write_animation,
)

__all__ = [
    "ANIMATED_INPUT_FORMATS",
    "ANIMATED_OUTPUT_FORMATS",
    "DEFAULT_FRAME_MS",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "ImageMeta",
    "JPEG_QUALITY",
    "OUTPUT_FORMATS",
    "PixelValueError",
    "array_to_pil",
    "avif_available",
    "check_writable_dir",
    "ensure_output_dir",
    "heif_available",
    "jpeg_quality",
    "orient_array",
    "output_format",
    "pil_to_array",
    "quantise",
    "read_frames",
    "read_image",
    "write_animation",
    "write_image",
]
