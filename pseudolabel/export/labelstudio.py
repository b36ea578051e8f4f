"""Label Studio export (tasks JSON with pre-annotations) and its reader.

Layout::

    <out_dir>/tasks.json            list of tasks: {"data": {"image": <url>, "video_id", "frame_index",
                                    "width", "height"}, "predictions": [{"model_version", "score",
                                    "result": [...]}]} ("annotations" instead with as_annotations=True)
    <out_dir>/labeling_config.xml   the project's labeling interface (paste it in Settings -> Labeling)
    <out_dir>/images/...            only with images=copy|symlink (default: none, frames are referenced)

Each box is a ``rectanglelabels`` result in percent of ``original_width`` / ``original_height`` (top-left
``x``, ``y``, ``width``, ``height``, clipped to the image) with its ``score``, plus a per-region
``textarea`` result ``provenance`` with the same region id holding lines ``reason: ...``, ``score: ...``,
``round: ...``, ``source: ...``, shown in the region's details. Pruned boxes (``include_pruned``) get
the label ``<name>_pruned`` (grey), so they stand out and a reviewer un-prunes one by relabelling it.

Image URLs are ``url_prefix + <path>``; the default prefix serves local files
(``/data/local-files/?d=``, with ``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`` and
``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` set to the frames folder, or to ``out_dir`` when the images
are copied); any other prefix (``http://host:8081/``) works the same way. The prediction ``score`` is the
lowest box score of the frame, so sorting tasks by it shows the doubtful frames first.
"""
from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import numpy as np

from ..boxes import clip_to_image
from ..files import read_json_or_raise
from ..records import Box, Dataset, Frame
from .common import (PRUNED_SUFFIX, ExportError, ExportItem, Label, categories_from, categories_of, check_image_mode,
                     export_items, frame_file_name, label_lookup, labels_for, parse_image_name, parse_provenance,
                     place_image, unique_box_ids)

TASKS_NAME = "tasks.json"
CONFIG_NAME = "labeling_config.xml"
DEFAULT_URL_PREFIX = "/data/local-files/?d="
DEFAULT_SOURCE = "labelstudio"
FROM_NAME, TO_NAME, PROVENANCE_NAME = "label", "image", "provenance"
_PRUNED_COLOR = "#9e9e9e"


def percent_rects(xyxy, *, width: int, height: int) -> np.ndarray:
    """(N, 4) ``xyxy`` pixels -> (N, 4) Label Studio ``x, y, width, height`` in percent of the image."""
    b = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    return np.stack([b[:, 0] / width * 100, b[:, 1] / height * 100,
                     (b[:, 2] - b[:, 0]) / width * 100, (b[:, 3] - b[:, 1]) / height * 100], axis=1)


def rect_to_xyxy(value: dict[str, Any], *, width: int, height: int) -> tuple[float, float, float, float]:
    """A ``rectanglelabels`` value (percent, top-left, optional ``rotation`` in degrees clockwise about the
    top-left corner) -> ``xyxy`` pixels; a rotated rectangle becomes its axis-aligned envelope."""
    x, y = float(value["x"]) / 100 * width, float(value["y"]) / 100 * height
    w, h = float(value["width"]) / 100 * width, float(value["height"]) / 100 * height
    theta = math.radians(float(value.get("rotation") or 0.0))
    if theta == 0.0:
        return (x, y, x + w, y + h)
    c, s = math.cos(theta), math.sin(theta)
    xs = [x + dx * c - dy * s for dx, dy in ((0, 0), (w, 0), (w, h), (0, h))]
    ys = [y + dx * s + dy * c for dx, dy in ((0, 0), (w, 0), (w, h), (0, h))]
    return (min(xs), min(ys), max(xs), max(ys))


def provenance_lines(box: Box) -> list[str]:
    """Text lines of the per-region ``provenance`` textarea (``key: value``)."""
    lines = [f"reason: {box.reason}"] if box.reason else []
    return lines + [f"score: {float(box.score)!r}", f"round: {int(box.round)}", f"source: {box.source}"]


def labelstudio_task(item: ExportItem, *, url: str, label_of: dict[tuple[int, str], str], box_ids: dict[int, int],
                     as_annotations: bool = False, model_version: str = "pseudolabel") -> dict[str, Any]:
    """One Label Studio task for a frame (see the module docstring); boxes clipped, empty ones dropped."""
    f = item.frame
    if f.width <= 0 or f.height <= 0:
        raise ExportError(f"Label Studio export needs the image size of {f.file_name!r}, got {f.width}x{f.height}")
    xyxy = clip_to_image([b.xyxy for b in item.boxes], width=f.width, height=f.height)
    results, scores = [], []
    for b, bb, (x, y, w, h) in zip(item.boxes, xyxy, percent_rects(xyxy, width=f.width, height=f.height)):
        if bb[2] - bb[0] <= 0 or bb[3] - bb[1] <= 0:
            continue
        rid = f"pl{box_ids[id(b)]}"
        geometry = {"x": float(x), "y": float(y), "width": float(w), "height": float(h), "rotation": 0}
        common = {"id": rid, "to_name": TO_NAME, "original_width": int(f.width), "original_height": int(f.height),
                  "image_rotation": 0}
        results.append({**common, "from_name": FROM_NAME, "type": "rectanglelabels", "score": float(b.score),
                        "value": {**geometry, "rectanglelabels": [label_of[(b.category_id, b.decision)]]}})
        results.append({**common, "from_name": PROVENANCE_NAME, "type": "textarea",
                        "value": {**geometry, "text": provenance_lines(b)}})
        scores.append(float(b.score))
    task: dict[str, Any] = {"data": {"image": url, "video_id": f.video_id, "frame_index": int(f.frame_index),
                                     "width": int(f.width), "height": int(f.height)}}
    if as_annotations:
        task["annotations"] = [{"result": results, "ground_truth": False}]
    else:
        pred: dict[str, Any] = {"model_version": model_version, "result": results}
        if scores:
            pred["score"] = min(scores)
        task["predictions"] = [pred]
    return task


def labeling_config(labels: list[Label]) -> str:
    """Label Studio labeling config: rectangles with our labels plus the per-region provenance textarea."""
    rows = []
    for lb in labels:
        color = f' background="{_PRUNED_COLOR}"' if lb.decision != "kept" else ""
        rows.append(f'    <Label value="{html.escape(lb.name, quote=True)}"{color}/>')
    return ("<View>\n"
            f'  <Image name="{TO_NAME}" value="$image" zoom="true"/>\n'
            f'  <RectangleLabels name="{FROM_NAME}" toName="{TO_NAME}" canRotate="false">\n'
            + "\n".join(rows) + "\n"
            "  </RectangleLabels>\n"
            f'  <TextArea name="{PROVENANCE_NAME}" toName="{TO_NAME}" perRegion="true" editable="true"/>\n'
            "</View>\n")


def export_labelstudio(ds: Dataset, out_dir: str | Path, *, frames_dir: str | Path, include_pruned: bool = False,
                       images: str | None = None, url_prefix: str = DEFAULT_URL_PREFIX,
                       as_annotations: bool = False) -> dict[str, Any]:
    """Write ``ds`` as Label Studio tasks (see the module docstring); returns counts for the manifest.

    Parameters
    ----------
    images
        ``none`` (default: URLs point at ``<video_id>/<index:06d>.jpg`` under the frames folder),
        ``copy`` or ``symlink`` (into ``out_dir/images/``; URLs ``images/<export name>``).
    url_prefix
        Prepended to the (URL-quoted) image path.
    as_annotations
        Write the boxes as ``annotations`` (already accepted) instead of ``predictions`` (pre-annotations).
    """
    mode = check_image_mode(images, allowed=("none", "copy", "symlink"), default="none", fmt="labelstudio")
    out = Path(out_dir)
    cats = categories_of(ds)
    labels = labels_for(cats, include_pruned=include_pruned)
    label_of = {(lb.category_id, lb.decision): lb.name for lb in labels}
    items = export_items(ds, include_pruned=include_pruned, frames_dir=frames_dir)
    box_ids = unique_box_ids(items)
    version = f"pseudolabel-round-{ds.info['round']}" if "round" in ds.info else "pseudolabel"
    tasks = []
    for it in items:
        if mode == "none":
            rel = Path(it.frame.file_name).as_posix()
        else:
            place_image(it.source, out / "images" / it.name, mode=mode, root=out)
            rel = f"images/{it.name}"
        tasks.append(labelstudio_task(it, url=url_prefix + quote(rel), label_of=label_of, box_ids=box_ids,
                                      as_annotations=as_annotations, model_version=version))
    (out / TASKS_NAME).write_text(json.dumps(tasks, indent=1) + "\n")
    (out / CONFIG_NAME).write_text(labeling_config(labels))
    n = sum(1 for t in tasks for key in ("predictions", "annotations") for r in t.get(key, [{}])[0].get("result", [])
            if r["type"] == "rectanglelabels")
    return {"labels": [lb.name for lb in labels], "images": mode, "n_boxes_written": n, "url_prefix": url_prefix,
            "images_root": str(Path(frames_dir).resolve()) if mode == "none" else str(out.resolve())}


# ---------------------------------------------------------------- reader
def _config_labels(path: Path) -> list[str]:
    if not path.is_file():
        return []
    return [html.unescape(m) for m in re.findall(r'<Label\s+value="([^"]*)"', path.read_text())]


def _task_key(data: dict[str, Any], url_prefix: str | None, where: str) -> tuple[str, int, str]:
    image = str(data.get("image", ""))
    path = image[len(url_prefix):] if url_prefix and image.startswith(url_prefix) else \
        image.split("?d=", 1)[1] if "?d=" in image else image
    path = unquote(path)
    if "video_id" in data and "frame_index" in data:
        try:
            return str(data["video_id"]), int(data["frame_index"]), (Path(path).suffix.lower() or ".jpg")
        except (TypeError, ValueError):
            raise ExportError(f"{where}: frame_index {data['frame_index']!r} is not an integer") from None
    try:
        return parse_image_name(path)
    except ExportError as e:
        raise ExportError(f"{where}: {e}") from None


def _chosen_result(task: dict[str, Any], prefer: str) -> list[dict[str, Any]]:
    annotations = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    predictions = task.get("predictions") or []
    order = (annotations, predictions) if prefer == "annotations" else (predictions, annotations)
    for group in order:
        if group:
            return list(group[-1].get("result") or [])
    return []


def _parse_lines(lines: list[Any]) -> tuple[dict[str, str], list[str]]:
    values, notes = {}, []
    for line in lines:
        key, sep, value = str(line).partition(":")
        if sep and key.strip() in ("reason", "score", "round", "source"):
            values[key.strip()] = value.strip()
        elif str(line).strip():
            notes.append(str(line))
    return values, notes


def read_labelstudio(path: str | Path, *, url_prefix: str | None = DEFAULT_URL_PREFIX,
                     prefer: str = "annotations") -> Dataset:
    """Read Label Studio tasks: our ``tasks.json`` or a project's JSON export after review.

    Parameters
    ----------
    path
        The tasks JSON, or the export folder holding ``tasks.json`` (``labeling_config.xml`` beside it,
        when present, fixes the category order).
    url_prefix
        Stripped from ``data.image`` to find the image path when the task has no ``video_id`` /
        ``frame_index`` (any ``...?d=`` prefix is stripped too).
    prefer
        ``annotations`` (default: the last non-cancelled annotation, i.e. the reviewer's, else the
        last prediction) or ``predictions``.

    Returns
    -------
    Dataset
        One frame per task; boxes ``xyxy`` float pixels from the ``rectanglelabels`` results (rotated
        ones as their envelope); label ``<name>_pruned`` -> decision ``pruned``; reason, score, round and
        source from the region's ``provenance`` lines (else the result's score; regions drawn by a
        reviewer: score 1.0, round 0, source ``"labelstudio"``); other provenance lines go to
        ``extra["review_notes"]``. ``info["annotated_frames"]``: ids of the frames whose task holds a non-cancelled
        annotation (what a reviewer submitted), whichever result ``prefer`` chose.
    """
    if prefer not in ("annotations", "predictions"):
        raise ExportError(f"prefer must be 'annotations' or 'predictions', got {prefer!r}")
    p = Path(path)
    tasks_path = p / TASKS_NAME if p.is_dir() else p
    tasks = read_json_or_raise(tasks_path, ExportError)
    if isinstance(tasks, dict):
        tasks = [tasks]
    if not isinstance(tasks, list) or not all(isinstance(t, dict) and isinstance(t.get("data"), dict) for t in tasks):
        raise ExportError(f"{tasks_path}: not Label Studio tasks (expected a list of objects with 'data')")
    chosen = [_chosen_result(t, prefer) for t in tasks]
    names = _config_labels(tasks_path.parent / CONFIG_NAME)
    for results in chosen:
        for r in results:
            if r.get("type") == "rectanglelabels":
                names += [n for n in r.get("value", {}).get("rectanglelabels", [])[:1] if n not in names]
    kept_first = [n for n in names if not n.endswith(PRUNED_SUFFIX)] + [n for n in names if n.endswith(PRUNED_SUFFIX)]
    lookup = label_lookup(kept_first)
    frames: list[Frame] = []
    boxes: list[Box] = []
    for fid, (task, results) in enumerate(zip(tasks, chosen), start=1):
        where = f"{tasks_path}: task {task.get('id', fid - 1)}"
        data = task["data"]
        video_id, index, ext = _task_key(data, url_prefix, where)
        rects = [r for r in results if r.get("type") == "rectanglelabels"]
        width = int(rects[0].get("original_width") or 0) if rects else 0
        height = int(rects[0].get("original_height") or 0) if rects else 0
        width, height = width or int(data.get("width") or 0), height or int(data.get("height") or 0)
        frames.append(Frame(id=fid, file_name=frame_file_name(video_id, index, ext), width=width, height=height,
                            video_id=video_id, frame_index=index))
        texts = {r.get("id"): r.get("value", {}).get("text") or [] for r in results
                 if r.get("type") == "textarea" and r.get("from_name", PROVENANCE_NAME) == PROVENANCE_NAME}
        for r in rects:
            value = r.get("value") or {}
            label_names = value.get("rectanglelabels") or []
            if not label_names:
                raise ExportError(f"{where}: region {r.get('id')!r} has no label")
            w = int(r.get("original_width") or width)
            h = int(r.get("original_height") or height)
            if w <= 0 or h <= 0:
                raise ExportError(f"{where}: region {r.get('id')!r} has no original_width/original_height")
            try:
                xyxy = rect_to_xyxy(value, width=w, height=h)
            except (KeyError, TypeError, ValueError):
                raise ExportError(f"{where}: region {r.get('id')!r} needs numeric x, y, width, height") from None
            lb = lookup[label_names[0]]
            values, notes = _parse_lines(texts.get(r.get("id"), []))
            values.setdefault("score", r.get("score"))
            values["decision"] = lb.decision
            prov = parse_provenance(values, default_source=DEFAULT_SOURCE, where=f"{where} region {r.get('id')!r}")
            extra: dict[str, Any] = {"review_notes": notes} if notes else {}
            if value.get("rotation"):
                extra["ls_rotation"] = float(value["rotation"])
            boxes.append(Box(image_id=fid, xyxy=xyxy, category_id=lb.category_id, id=len(boxes) + 1,
                             extra=extra, **prov))
    annotated = [fid for fid, task in enumerate(tasks, start=1)
                 if any(not a.get("was_cancelled") for a in task.get("annotations") or [])]
    return Dataset(frames=frames, boxes=boxes, categories=categories_from(lookup),
                   info={"imported_from": "labelstudio", "path": str(tasks_path), "annotated_frames": annotated})
