"""COCO RLE masks (the peers' annotation format) -> pixel boxes, through pycocotools.

VideoRefer-Bench and PixelRefer's HC-STVG give a target as one COCO run-length-encoded mask per
annotated frame: ``{"size": [height, width], "counts": "<compressed string>"}`` (or an uncompressed
``counts`` list), or ``null`` for a frame where the target is absent. Artemis takes boxes, so a mask
becomes its tight box ``[x1, y1, x2, y2]`` (pixel edges, as `pycocotools.mask.toBbox` gives x, y, w, h),
and an empty or null mask becomes ``[]``, the "not tracked here" entry of a track list.
"""

from __future__ import annotations

from typing import Any, Optional

from artemis_cli.errors import InputError, UsageError


def _mask_api():
    try:
        from pycocotools import mask
    except ImportError:
        raise UsageError("reading COCO RLE masks needs pycocotools",
                         hint="pip install 'artemis[bench]' (pycocotools)") from None
    return mask


def rle_box(segmentation: Optional[dict[str, Any]], where: str = "segmentation") -> list[float]:
    """The tight box ``[x1, y1, x2, y2]`` of one COCO RLE mask; ``[]`` for a null or empty mask.

    A malformed mask (wrong size, counts that do not decode, or a polygon list) is an `InputError`
    naming `where`."""
    if segmentation is None:
        return []
    if not isinstance(segmentation, dict):
        raise InputError(f"{where}: expected a COCO RLE object {{size, counts}} or null, "
                         f"got {type(segmentation).__name__} (polygons are not supported)")
    mask = _mask_api()
    size, counts = segmentation.get("size"), segmentation.get("counts")
    if not (isinstance(size, list) and len(size) == 2 and all(type(v) is int and v > 0 for v in size)):
        raise InputError(f"{where}.size: expected [height, width] positive integers, got {size!r}")
    height, width = size
    try:
        if isinstance(counts, list):  # uncompressed RLE: run lengths, summing to height * width
            if sum(counts) != height * width:
                raise InputError(f"{where}.counts: runs sum to {sum(counts)}, expected {height} x {width} = "
                                 f"{height * width}")
            rle = mask.frPyObjects({"size": size, "counts": counts}, height, width)
        elif isinstance(counts, str):
            rle = {"size": size, "counts": counts.encode("ascii")}
        else:
            raise InputError(f"{where}.counts: expected a string or a list of run lengths, got {type(counts).__name__}")
        area = float(mask.area(rle))
        x, y, w, h = (float(v) for v in mask.toBbox(rle))
    except (UnicodeEncodeError, ValueError, TypeError, OverflowError) as exc:
        raise InputError(f"{where}.counts: not a valid COCO RLE ({type(exc).__name__}: {exc})") from None
    if area <= 0 or w <= 0 or h <= 0:
        return []
    # A corrupt string can decode to runs past the image: the box then reaches outside it.
    if x + w > width + 1e-6 or y + h > height + 1e-6:
        raise InputError(f"{where}.counts: decodes outside the {width}x{height} mask")
    return [x, y, x + w, y + h]


def encode_box_mask(box: list[float], height: int, width: int) -> dict[str, Any]:
    """A compressed COCO RLE of a filled rectangle (fixtures, and a box-only target given as a mask)."""
    import numpy as np

    mask = _mask_api()
    pixels = np.zeros((height, width), dtype=np.uint8, order="F")
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    pixels[max(y1, 0):max(y2, 0), max(x1, 0):max(x2, 0)] = 1
    rle = mask.encode(pixels)
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}
