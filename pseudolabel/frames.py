"""Frame sampling and extraction, done once per experiment; every round reuses the JPEGs.

Inputs are video files, folders of videos, or folders of still images. Sampled frames are written
as ``frames_dir/<video_id>/<frame_index:06d>.jpg``; a JPEG that already exists is reused, so a rerun
after an interruption resumes where it stopped. Bad inputs never stop the run: each is recorded in
the manifest with ``status="skipped"`` and a reason, and :func:`require_frames` raises only when
nothing at all could be sampled.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pseudolabel.records import Frame

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"})
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
DEFAULT_FPS = 25.0
THUMB_SIZE = (32, 18)  # (width, height) of the grayscale thumbnail used for near-duplicate tests
_MAX_ID_LEN = 100


class NoUsableInputError(RuntimeError):
    """No frame at all could be sampled from the given inputs."""


@dataclass
class SamplingConfig:
    """How frames are picked from each video.

    Attributes
    ----------
    stride : int or None
        Keep every ``stride``-th frame (None: every frame).
    target_fps : float or None
        When set, wins over ``stride``: ``stride = max(1, round(fps / target_fps))``.
    max_frames_per_video : int or None
        Stop reading a video once this many frames are kept.
    dedup_threshold : float or None
        Mean absolute difference (0-255 scale) between 32x18 grayscale thumbnails of a sampled
        frame and the last kept frame; below it the frame is a near-duplicate and skipped.
        None disables the test. The default only catches practically identical frames (frozen
        or repeated frames): on static-camera sports footage a whole rally differs from its first
        frame by a mean of under 1, and a small ball moves the mean by about 0.01, so larger
        values (e.g. 2.0) keep only 1-2 frames of a 100-frame tennis clip.
    jpeg_quality : int
        Quality of the written JPEGs.
    max_pixels : int
        Frames with more pixels than this are rejected (the video is skipped).
    """

    stride: int | None = None
    target_fps: float | None = None
    max_frames_per_video: int | None = None
    dedup_threshold: float | None = 0.05
    jpeg_quality: int = 95
    max_pixels: int = 8000 * 8000

    def stride_for(self, fps: float) -> int:
        """Frame stride to use for a video recorded at ``fps``."""
        if self.target_fps is not None and self.target_fps > 0:
            return max(1, round(fps / self.target_fps))
        return max(1, int(self.stride or 1))


def safe_video_id(name: str) -> str:
    """Turn any name into a safe single path component.

    Only letters, digits, ``_``, ``-`` and ``.`` survive (others become ``_``); leading dots,
    underscores and dashes are stripped so that ``..``, ``../../x`` or hidden names cannot escape
    or hide. An empty result becomes ``"video"``.
    """
    s = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    s = re.sub(r"_+", "_", s).lstrip("._-")[:_MAX_ID_LEN].rstrip(".")
    return s or "video"


def _unique_id(name: str, used: set[str]) -> str:
    base = safe_video_id(name)
    vid, k = base, 2
    while vid in used:
        vid, k = f"{base}_{k}", k + 1
    used.add(vid)
    return vid


def read_rgb(path: str | Path) -> np.ndarray:
    """RGB uint8 (H, W, 3) of an image file (a sampled frame); :class:`FileNotFoundError` (an ``OSError``)
    when it is missing or unreadable."""
    import cv2

    im = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if im is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return cv2.cvtColor(im, cv2.COLOR_BGR2RGB)


def _thumb(img: np.ndarray) -> np.ndarray:
    import cv2

    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 else img
    return cv2.resize(gray, THUMB_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)


def _write_jpeg(path: Path, img: np.ndarray, quality: int) -> None:
    """Atomic JPEG write: temp name then ``os.replace``.

    No fsync (unlike :func:`pseudolabel.files.atomic_write_bytes`): atomicity against a killed
    process is what resuming needs, and an fsync per frame is costly for thousands of frames.
    """
    import cv2

    ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise OSError(f"JPEG encoding failed for {path}")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(buf.tobytes())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class _JpegWriter:
    """Encode and write JPEGs (:func:`_write_jpeg`) in one background thread, off the decoding loop.

    ``cv2.imencode`` releases the GIL, so encoding frame i overlaps decoding frame i+1. At most
    ``max_pending`` frames wait (bounded memory); leaving the ``with`` block waits for every write
    and raises the first error (disk full...), so a returned frame list always has its files.
    """

    def __init__(self, max_pending: int = 4) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jpeg-writer")
        self._pending: list = []
        self._max_pending = max(1, int(max_pending))

    def write(self, path: Path, img: np.ndarray, quality: int) -> None:
        while len(self._pending) >= self._max_pending:
            self._pending.pop(0).result()
        self._pending.append(self._pool.submit(_write_jpeg, path, img, quality))

    def __enter__(self) -> "_JpegWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            for fut in self._pending:
                if exc_type is None:
                    fut.result()
                else:
                    fut.exception()  # wait, but let the exception in flight win
        finally:
            self._pending.clear()
            self._pool.shutdown(wait=True)


def _clean_temp(folder: Path) -> None:
    for p in folder.glob(".*.tmp"):
        p.unlink(missing_ok=True)


def _frame_file(video_id: str, index: int) -> str:
    return f"{video_id}/{index:06d}.jpg"


def _check_file(path: Path) -> str:
    """Reason why ``path`` cannot be a media file, or "" if it may be one."""
    try:
        if not path.exists():
            return "does not exist"
        if not path.is_file():
            return "not a regular file"
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        if not os.access(path, os.R_OK):
            return "not readable (permission denied)"
    except OSError as e:
        return f"cannot access: {e}"
    return ""


def sample_video(
    path: str | Path, *, video_id: str, frames_dir: str | Path, config: SamplingConfig
) -> tuple[list[Frame], dict[str, Any]]:
    """Sample one video into JPEGs.

    Frames off the stride are skipped with ``cap.grab()`` only: never retrieved, so no colour
    conversion or copy (the codec itself must still run, inter frames depend on earlier ones; the
    saving is in BENCHMARKS.md). Sampled frames are fetched with
    ``cap.retrieve()``, tested for near-duplicates against the last kept frame,
    and written to ``frames_dir/<video_id>/<index:06d>.jpg`` unless that file already exists
    (JPEG encoding and writing run in a background thread, overlapping decoding).

    Parameters
    ----------
    path : str or Path
        Video file.
    video_id : str
        Safe id (see :func:`safe_video_id`); a ValueError is raised for an unsafe one.
    frames_dir : str or Path
        Root of the experiment's frames.
    config : SamplingConfig

    Returns
    -------
    frames : list of Frame
        Kept frames in index order, all with ``id=0`` (the caller renumbers);
        ``file_name`` is relative to ``frames_dir``.
    record : dict
        The video's manifest record: ``video_id, path, kind, status ("ok"|"skipped"), reason,
        fps, stride, n_frames_declared, n_frames_read, n_sampled, skipped {stride,
        near_duplicate, cap, undecodable}, capped, near_duplicate_indices``.
    """
    if safe_video_id(video_id) != video_id:
        raise ValueError(f"unsafe video_id {video_id!r}; use safe_video_id()")
    path = Path(path)
    rec: dict[str, Any] = {
        "video_id": video_id,
        "path": str(path),
        "kind": "video",
        "status": "skipped",
        "reason": "",
        "fps": None,
        "stride": None,
        "n_frames_declared": None,
        "n_frames_read": 0,
        "n_sampled": 0,
        "skipped": {"stride": 0, "near_duplicate": 0, "cap": 0, "undecodable": 0},
        "capped": False,
        "near_duplicate_indices": [],
    }
    bad = _check_file(path)
    if bad:
        rec["reason"] = bad
        return [], rec

    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        with _JpegWriter() as writer:
            return _read_video(cap, rec, video_id=video_id, frames_dir=Path(frames_dir), config=config,
                               writer=writer)
    except cv2.error as e:  # a broken container or codec must not stop the run; disk errors do
        rec.update(status="skipped", reason=f"error while decoding: {e}".strip())
        return [], rec
    finally:
        cap.release()


def _read_video(cap, rec, *, video_id: str, frames_dir: Path, config: SamplingConfig,
                writer: _JpegWriter | None = None):
    import cv2

    notes: list[str] = []
    if not cap.isOpened():
        rec["reason"] = "cannot open as video (not a video, unsupported codec or truncated container)"
        return [], rec
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    if not math.isfinite(fps) or fps <= 0:
        notes.append(f"container fps unknown, assumed {DEFAULT_FPS:g}")
        fps = DEFAULT_FPS
    declared = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    declared = int(declared) if math.isfinite(declared) and declared > 0 else None
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
    stride = config.stride_for(fps)
    rec.update(fps=fps, stride=stride, n_frames_declared=declared)
    if w * h > config.max_pixels:
        rec["reason"] = f"absurd frame size {w}x{h} (max_pixels={config.max_pixels})"
        return [], rec

    out_dir = frames_dir / video_id
    frames: list[Frame] = []
    skipped = rec["skipped"]
    last_thumb: np.ndarray | None = None
    index = -1
    cap_n = config.max_frames_per_video
    while True:
        if cap_n is not None and len(frames) >= cap_n:
            rec["capped"] = True
            if declared is not None:
                skipped["cap"] = max(0, declared - (index + 1))
            notes.append(f"stopped at max_frames_per_video={cap_n} after frame {index}")
            break
        if not cap.grab():
            break
        index += 1
        if index % stride:
            skipped["stride"] += 1
            continue
        ok, img = cap.retrieve()
        if not ok or img is None or img.size == 0:
            skipped["undecodable"] += 1
            continue
        fh, fw = img.shape[:2]
        if fh * fw > config.max_pixels:
            rec.update(reason=f"absurd frame size {fw}x{fh} (max_pixels={config.max_pixels})")
            rec["n_frames_read"] = index + 1
            return [], rec
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        elif img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
        if config.dedup_threshold is not None:
            thumb = _thumb(img)
            if last_thumb is not None and float(np.abs(thumb - last_thumb).mean()) < config.dedup_threshold:
                skipped["near_duplicate"] += 1
                rec["near_duplicate_indices"].append(index)
                continue
            last_thumb = thumb
        if not frames:
            out_dir.mkdir(parents=True, exist_ok=True)
            _clean_temp(out_dir)
        file_name = _frame_file(video_id, index)
        target = frames_dir / file_name
        if not target.exists():
            if writer is None:
                _write_jpeg(target, img, config.jpeg_quality)
            else:
                writer.write(target, img, config.jpeg_quality)
        frames.append(Frame(id=0, file_name=file_name, width=fw, height=fh, video_id=video_id,
                            frame_index=index, timestamp=index / fps))

    rec["n_frames_read"] = index + 1
    rec["n_sampled"] = len(frames)
    if declared is not None and not rec["capped"] and index + 1 < declared:
        notes.append(f"stream ended at frame {index + 1} of {declared} declared (truncated?)")
    if skipped["undecodable"]:
        notes.append(f"{skipped['undecodable']} sampled frame(s) could not be decoded")
    if frames:
        rec["status"] = "ok"
    else:
        notes.insert(0, "no decodable frames")
    rec["reason"] = "; ".join(notes)
    return frames, rec


def sample_images(
    folder: str | Path,
    *,
    frames_dir: str | Path,
    config: SamplingConfig,
    used_ids: set[str] | None = None,
) -> tuple[list[Frame], dict[str, Any]]:
    """Copy a folder of still images into the frames directory.

    Stills have no time order: each image (jpg/jpeg/png/bmp/webp, sorted by name) becomes its own
    video (id = its sanitised stem, made unique against ``used_ids``, which is updated), with
    ``frame_index`` 0, re-encoded to ``frames_dir/<video_id>/000000.jpg`` (reused if present).
    No stride, cap or near-duplicate test applies.

    Returns
    -------
    frames : list of Frame
        One per readable image, ``id=0``.
    record : dict
        ``path, kind="images", status, reason, n_images, n_sampled, video_ids,
        skipped_images [{path, reason}]``.
    """
    import cv2

    folder, frames_dir = Path(folder), Path(frames_dir)
    used = used_ids if used_ids is not None else set()
    rec: dict[str, Any] = {"path": str(folder), "kind": "images", "status": "skipped", "reason": "",
                           "n_images": 0, "n_sampled": 0, "video_ids": [], "skipped_images": []}
    try:
        files = sorted(p for p in folder.iterdir()
                       if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
    except OSError as e:
        rec["reason"] = f"cannot list folder: {e}"
        return [], rec
    rec["n_images"] = len(files)
    frames: list[Frame] = []
    for p in files:
        reason = _check_file(p)
        img = None
        if not reason:
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None or img.size == 0:
                reason = "unreadable image"
            elif img.shape[0] * img.shape[1] > config.max_pixels:
                reason = f"absurd image size {img.shape[1]}x{img.shape[0]} (max_pixels={config.max_pixels})"
        if reason:
            rec["skipped_images"].append({"path": str(p), "reason": reason})
            continue
        vid = _unique_id(p.stem, used)
        file_name = _frame_file(vid, 0)
        target = frames_dir / file_name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            _write_jpeg(target, img, config.jpeg_quality)
        frames.append(Frame(id=0, file_name=file_name, width=int(img.shape[1]),
                            height=int(img.shape[0]), video_id=vid, frame_index=0))
        rec["video_ids"].append(vid)
    rec["n_sampled"] = len(frames)
    if frames:
        rec["status"] = "ok"
        if rec["skipped_images"]:
            rec["reason"] = f"{len(rec['skipped_images'])} unreadable image(s) skipped"
    else:
        rec["reason"] = "no readable images" if files else "no images"
    return frames, rec


def _skip(path: Path, reason: str, kind: str = "input") -> dict[str, Any]:
    return {"path": str(path), "kind": kind, "status": "skipped", "reason": reason, "n_sampled": 0}


def sample_inputs(
    inputs: list[str | Path], *, frames_dir: str | Path, config: SamplingConfig
) -> tuple[list[Frame], list[dict[str, Any]]]:
    """Sample every input; never raises for a bad input (disk errors while writing do raise).

    Each input is a video file, a folder of videos (its direct children with a video extension:
    mp4, mov, avi, mkv, webm, m4v), or a folder of images (containing images and no videos).
    A file given explicitly with another extension is still tried with OpenCV. Video ids are the
    sanitised file stems, made unique with a ``_2``, ``_3``... suffix in input order.

    Returns
    -------
    frames : list of Frame
        All kept frames sorted by ``(video_id, frame_index)`` with ids 1..N.
    records : list of dict
        One manifest record per video / image folder / rejected input, each with at least
        ``path, kind, status ("ok"|"skipped"), reason, n_sampled``.
    """
    frames_dir = Path(frames_dir)
    used: set[str] = set()
    frames: list[Frame] = []
    records: list[dict[str, Any]] = []

    def do_video(p: Path) -> None:
        fr, rec = sample_video(p, video_id=_unique_id(p.stem, used), frames_dir=frames_dir, config=config)
        frames.extend(fr)
        records.append(rec)

    for raw in inputs:
        p = Path(raw)
        if not p.is_dir():
            if p.is_file() or not p.exists():
                do_video(p)  # sample_video records nonexistent / empty / undecodable files
            else:
                records.append(_skip(p, "not a file or folder"))
            continue
        try:
            children = sorted(c for c in p.iterdir() if not c.name.startswith("."))
            files = [c for c in children if c.is_file()]
        except OSError as e:
            records.append(_skip(p, f"cannot list folder: {e}", kind="folder"))
            continue
        videos = [c for c in files if c.suffix.lower() in VIDEO_EXTENSIONS]
        images = [c for c in files if c.suffix.lower() in IMAGE_EXTENSIONS]
        if videos:
            for v in videos:
                do_video(v)
            others = [c.name for c in files if c not in videos]
            if others:
                records.append({"path": str(p), "kind": "folder", "status": "ignored_files", "n_sampled": 0,
                                "reason": f"folder of videos: ignored {len(others)} other "
                                          f"file(s): {', '.join(others[:10])}"})
        elif images:
            fr, rec = sample_images(p, frames_dir=frames_dir, config=config, used_ids=used)
            frames.extend(fr)
            records.append(rec)
        else:
            records.append(_skip(p, "folder contains no videos or images", kind="folder"))

    frames.sort(key=lambda f: (f.video_id, f.frame_index))
    for i, f in enumerate(frames, start=1):
        f.id = i
    return frames, records


def require_frames(frames: list[Frame], records: list[dict[str, Any]]) -> None:
    """Raise :class:`NoUsableInputError` when ``frames`` is empty, listing every input's reason."""
    if frames:
        return
    if not records:
        raise NoUsableInputError("No usable input: no input paths were given.")
    parts = [f"{r.get('path', '?')} ({r.get('reason') or r.get('status', 'no frames')})" for r in records]
    raise NoUsableInputError(
        f"No usable input: not a single frame could be sampled from the {len(records)} input(s) "
        f"given. {'; '.join(parts)}. Check that the paths exist and hold readable videos "
        f"({', '.join(sorted(e[1:] for e in VIDEO_EXTENSIONS))}) or folders of images."
    )
