"""Image files of the report: box crops with context and frame thumbnails with their boxes drawn.

:func:`context_crop`, :func:`draw_box_on_crop` and :func:`thumbnail` are pure over RGB uint8 arrays;
:class:`FrameReader` and :func:`write_jpeg` are the IO.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

KEPT_RGB = (40, 200, 60)
PRUNED_RGB = (230, 40, 40)


def crop_side(xyxy, *, context: float, min_side: float) -> float:
    """Side (px, in the frame) of the square crop around a box: ``context`` times its longer side."""
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    return max(context * max(x2 - x1, y2 - y1), min_side)


def context_crop(image: np.ndarray, xyxy, *, size: int = 96, context: float = 3.0,
                 min_side: float = 24.0) -> np.ndarray:
    """(size, size, 3) square crop centred on the box, ``context`` times its longer side (at least
    ``min_side`` px) so that the surroundings show; outside the frame the border repeats."""
    from pseudolabel.prune.features import square_crop

    return square_crop(image, xyxy, size=size, context=context, min_side=min_side)


def draw_box_on_crop(crop: np.ndarray, xyxy, *, context: float = 3.0, min_side: float = 24.0,
                     colour: Sequence[int] = KEPT_RGB) -> np.ndarray:
    """A copy of a :func:`context_crop` crop with the box outlined (same ``context``/``min_side``)."""
    import cv2

    size = crop.shape[0]
    s = size / crop_side(xyxy, context=context, min_side=min_side)
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    p1 = (int(round(size / 2 + s * (x1 - cx))) - 1, int(round(size / 2 + s * (y1 - cy))) - 1)
    p2 = (int(round(size / 2 + s * (x2 - cx))) + 1, int(round(size / 2 + s * (y2 - cy))) + 1)
    out = np.ascontiguousarray(crop.copy())
    # a dark halo keeps the outline visible on any background
    cv2.rectangle(out, (p1[0] - 1, p1[1] - 1), (p2[0] + 1, p2[1] + 1), (0, 0, 0), 1)
    cv2.rectangle(out, p1, p2, tuple(int(c) for c in colour), 1)
    return out


def thumbnail(image: np.ndarray, *, width: int = 320, kept: Iterable = (), pruned: Iterable = (),
              min_box: int = 7) -> np.ndarray:
    """The frame resized to ``width`` px with kept boxes in green and pruned ones in red, each drawn at
    least ``min_box`` px wide so that small balls stay visible."""
    import cv2

    h, w = image.shape[:2]
    s = width / w
    out = cv2.resize(image, (width, max(1, int(round(h * s)))), interpolation=cv2.INTER_AREA)
    for boxes, colour in ((pruned, PRUNED_RGB), (kept, KEPT_RGB)):
        for x1, y1, x2, y2 in boxes:
            cx, cy = (x1 + x2) / 2 * s, (y1 + y2) / 2 * s
            hw, hh = max((x2 - x1) * s, min_box) / 2 + 1, max((y2 - y1) * s, min_box) / 2 + 1
            cv2.rectangle(out, (int(cx - hw), int(cy - hh)), (int(cx + hw), int(cy + hh)), colour, 1,
                          lineType=cv2.LINE_AA)
    return out


def write_jpeg(path: str | Path, rgb: np.ndarray, *, quality: int = 88) -> Path:
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"cannot encode {path}")
    path.write_bytes(buf.tobytes())
    return path


class FrameReader:
    """RGB frames of an experiment by ``file_name`` (relative to ``frames_dir``), the last
    ``cache_size`` kept in memory (rounds share frames)."""

    def __init__(self, frames_dir: str | Path, *, cache_size: int = 64):
        self.frames_dir = Path(frames_dir)
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def __call__(self, file_name: str) -> np.ndarray:
        if file_name in self._cache:
            self._cache.move_to_end(file_name)
            return self._cache[file_name]
        from pseudolabel.frames import read_rgb

        im = read_rgb(self.frames_dir / file_name)
        self._cache[file_name] = im
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return im
