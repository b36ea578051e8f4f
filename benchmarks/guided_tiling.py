"""Guided tiling against full tiling: the same teacher, the same tiles, the same decoded frames.

Run through ``benchmarks/label_throughput.py --guided`` (or this file). For each set it times the label
stage's detector alone on frames already decoded in memory, video by video in time order (each video's
frames go through full tiling, then through guided tiling, so drift of the machine hits both alike):

- football_broadcast (720p, human ball boxes): the first ``--guided-frames`` frames of every clip; recall and
  precision of both at IoU 0.5 against the ground truth, for the teacher's boxes at the label floor (what the
  hysteresis may confirm), at the teacher's threshold, and for what round 0's hysteresis keeps of them;
- tennis (1080p, no ground truth): the first ``--guided-frames`` sampled frames (every ``--stride``-th) of
  ``video_input1.mp4``; the share of full tiling's boxes that guided tiling also finds (IoU 0.5).

Prints frames/s and views per frame of both and, exactly, ``guided speed-up: <x>x`` (football_broadcast, or
the only set run) and ``guided recall: <guided> vs <full>`` (football_broadcast at the label floor).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FOOTBALL = SHARED / "data" / "videos" / "football_broadcast"
TENNIS = SHARED / "data" / "videos" / "tennis" / "video_input1.mp4"


def read_frames(path: Path, indices) -> list[np.ndarray]:
    """RGB frames of ``path`` at the sorted ``indices`` (decoded once, in order)."""
    import cv2

    wanted, out = set(int(i) for i in indices), []
    cap = cv2.VideoCapture(str(path))
    i, last = 0, max(wanted)
    while i <= last:
        ok, im = cap.read()
        if not ok:
            break
        if i in wanted:
            out.append(cv2.cvtColor(im, cv2.COLOR_BGR2RGB))
        i += 1
    cap.release()
    return out


def build_detectors(overrides: list[str]):
    """(full tiling, guided tiling, teacher config): both wrap the same network object."""
    from hydra import compose, initialize_config_dir

    from pseudolabel.detectors.tiling import TiledDetector
    from pseudolabel.label import configure_threads
    from pseudolabel.safe_config import instantiate

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["teacher=ssd_mobilenet_v2_guided", *overrides])
    configure_threads(cfg.label.num_threads)
    guided = instantiate(cfg.teacher.detector)
    full = TiledDetector(guided.detector, tile_size=guided.tile_size, overlap=guided.overlap,
                         full_frame=guided.full_frame, fusion_iou=guided.fusion_iou, fusion=guided.fusion,
                         drop_edge_boxes=guided.drop_edge_boxes, batch_size=guided.batch_size)
    return full, guided, cfg


def label_video(detector, frames: list[np.ndarray], *, batch_size: int):
    """(detections of every frame, seconds): the frames in batches, in order, streamed as the label stage
    streams them (:func:`pseudolabel.detectors.base.stream_predictions`; guided tiling's look back holds frames
    across batches)."""
    from pseudolabel.detectors.base import stream_predictions

    if hasattr(detector, "start_video"):
        detector.start_video()
    t0 = time.perf_counter()
    batches = (frames[s:s + batch_size] for s in range(0, len(frames), batch_size))
    out = [d for dets in stream_predictions(detector, batches) for d in dets]
    return out, time.perf_counter() - t0


def as_dataset(per_video: dict[str, list], *, sizes: dict[str, tuple[int, int]], class_ids, floor: float):
    """Detections (per video, in frame order) -> a Dataset of target boxes at or above ``floor``."""
    from pseudolabel.records import Box, Dataset, Frame

    frames, boxes = [], []
    for vid, (indices, dets) in per_video.items():
        w, h = sizes[vid]
        for fi, det in zip(indices, dets):
            frame = Frame(id=len(frames) + 1, file_name=f"{vid}/{fi}.jpg", width=w, height=h, video_id=vid,
                          frame_index=int(fi))
            frames.append(frame)
            keep = (det.scores >= floor) & np.isin(det.labels, list(class_ids))
            for xyxy, score in zip(det.boxes[keep], det.scores[keep]):
                boxes.append(Box(image_id=frame.id, xyxy=tuple(float(v) for v in xyxy), score=float(score),
                                 id=len(boxes) + 1))
    return Dataset(frames=frames, boxes=boxes)


def kept_by_hysteresis(ds, cfg, *, high: float):
    """A copy of ``ds`` (boxes at the label floor) after round 0's hysteresis (``cfg.prune.hysteresis``): the
    boxes that would be kept as labels."""
    import copy

    from omegaconf import OmegaConf

    from pseudolabel.prune.temporal import HysteresisConfig, apply_hysteresis

    ds = copy.deepcopy(ds)
    hcfg = HysteresisConfig(**OmegaConf.to_container(cfg.prune.hysteresis, resolve=True))
    apply_hysteresis(ds, hcfg, round=0, high=high)
    return ds


def run_set(name: str, videos: list[tuple[str, Path, list[int]]], full, guided, *, batch_size: int) -> dict:
    """Label every video with both detectors; timings, views and detections."""
    from tqdm.auto import tqdm

    res = {"full": {"s": 0.0, "views": 0, "dets": {}}, "guided": {"s": 0.0, "views": 0, "dets": {}}}
    sizes, n_frames = {}, 0
    views_before = len(guided.views_run)
    for vid, path, indices in tqdm(videos, desc=name, unit="video"):
        frames = read_frames(path, indices)
        indices = indices[:len(frames)]
        sizes[vid] = (frames[0].shape[1], frames[0].shape[0])
        n_frames += len(frames)
        for key, det in (("full", full), ("guided", guided)):
            dets, seconds = label_video(det, frames, batch_size=batch_size)
            res[key]["s"] += seconds
            res[key]["dets"][vid] = (indices, dets)
        res["full"]["views"] += len(full._views(frames[0])) * len(frames)
    res["guided"]["views"] = int(sum(guided.views_run[views_before:]))
    res["frames"], res["sizes"] = n_frames, sizes
    for key in ("full", "guided"):
        res[key]["fps"] = n_frames / res[key]["s"]
        res[key]["views_per_frame"] = res[key]["views"] / n_frames
    return res


def football_videos(frames_per_clip: int):
    gt_path = FOOTBALL / "ground_truth.json"
    from pseudolabel.gt_readers import read_coco_gt

    gt = read_coco_gt(gt_path)
    by_video: dict[str, list[int]] = {}
    for f in gt.frames:
        by_video.setdefault(f.video_id, []).append(f.frame_index)
    videos = [(vid, FOOTBALL / f"{vid}.mp4", sorted(idx)[:frames_per_clip]) for vid, idx in sorted(by_video.items())]
    return videos, gt


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", default=["football_broadcast", "tennis"],
                    choices=["football_broadcast", "tennis"])
    ap.add_argument("--guided-frames", type=int, default=30,
                    help="frames per football clip (consecutive samples) and sampled tennis frames")
    ap.add_argument("--stride", type=int, default=3, help="tennis: label every stride-th frame")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. teacher.detector.scan_every=4")
    a = ap.parse_args(argv)
    from pseudolabel.evaluate import evaluate

    full, guided, cfg = build_detectors(a.overrides)
    class_ids = list(cfg.teacher.class_ids)
    floor = float(min(cfg.prune.hysteresis.floor if cfg.prune.get("hysteresis") else cfg.teacher.score_threshold,
                      cfg.teacher.score_threshold))
    high = float(cfg.teacher.score_threshold)
    batch = int(cfg.teacher.batch_size)
    g = cfg.teacher.detector
    print(f"teacher: {g.detector._target_.rsplit('.', 1)[-1]}, tiles {g.tile_size} px, overlap {g.overlap}; guided: "
          f"scan_every {g.scan_every}, max_speed {g.max_speed}, motion_tiles {g.motion_tiles}, "
          f"look_back {g.get('look_back', False)}; {batch} frames per call (streamed); boxes scored at the label "
          f"floor {floor} and the threshold {high}")
    warm = np.zeros((720, 1280, 3), np.uint8)
    full.predict([warm])
    guided.predict([warm])
    guided.views_run.clear()
    out: dict = {"command": " ".join(sys.argv), "sets": {}}
    for name in a.sets:
        if name == "football_broadcast":
            if not (FOOTBALL / "ground_truth.json").is_file():
                print(f"{name}: skipped ({FOOTBALL} is absent)")
                continue
            videos, gt = football_videos(a.guided_frames)
        else:
            if not TENNIS.is_file():
                print(f"{name}: skipped ({TENNIS} is absent)")
                continue
            videos, gt = [("video_input1", TENNIS, list(range(0, a.guided_frames * a.stride, a.stride)))], None
        res = run_set(name, videos, full, guided, batch_size=batch)
        entry = {k: {m: res[k][m] for m in ("s", "fps", "views_per_frame")} for k in ("full", "guided")}
        entry["frames"], entry["speed_up"] = res["frames"], res["guided"]["fps"] / res["full"]["fps"]
        ds = {k: {t: as_dataset(res[k]["dets"], sizes=res["sizes"], class_ids=class_ids, floor=t)
                  for t in (floor, high)} for k in ("full", "guided")}
        print(f"\n{name}: {res['frames']} frames, {len(videos)} video(s)")
        for k in ("full", "guided"):
            print(f"  {k:<7} {entry[k]['fps']:6.3f} frames/s  {entry[k]['views_per_frame']:6.1f} views/frame  "
                  f"({entry[k]['s']:.0f} s)")
        print(f"  ratio   {entry['speed_up']:.2f}x frames/s, "
              f"{entry['full']['views_per_frame'] / entry['guided']['views_per_frame']:.2f}x fewer views")
        if gt is not None:
            for t in (floor, high):
                m = {k: evaluate(ds[k][t], gt) for k in ("full", "guided")}
                entry[f"score_{t}"] = {k: {q: m[k][q] for q in ("precision", "recall", "f1", "tp", "fp", "fn")
                                           if q in m[k]} for k in m}
                print(f"  score >= {t}: recall {m['guided']['recall']:.3f} (guided) vs {m['full']['recall']:.3f} "
                      f"(full), precision {m['guided']['precision']:.3f} vs {m['full']['precision']:.3f}")
            if cfg.prune.get("hysteresis"):  # what round 0 keeps: the floor's boxes that seeded tracks confirm
                m = {k: evaluate(kept_by_hysteresis(ds[k][floor], cfg, high=high), gt) for k in ("full", "guided")}
                entry["kept_by_hysteresis"] = {k: {q: m[k][q] for q in ("precision", "recall", "f1", "tp", "fp", "fn")
                                                   if q in m[k]} for k in m}
                print(f"  kept by the hysteresis: recall {m['guided']['recall']:.3f} (guided) vs "
                      f"{m['full']['recall']:.3f} (full), precision {m['guided']['precision']:.3f} vs "
                      f"{m['full']['precision']:.3f}")
        else:
            for t in (floor, high):
                m = evaluate(ds["guided"][t], ds["full"][t])  # full tiling's boxes as the reference
                entry[f"share_of_full_{t}"] = m["recall"]
                print(f"  score >= {t}: guided finds {m['recall']:.3f} of full tiling's "
                      f"{len(ds['full'][t].boxes)} boxes")
        out["sets"][name] = entry
    main_set = "football_broadcast" if "football_broadcast" in out["sets"] else next(iter(out["sets"]), None)
    if main_set is not None:
        print(f"\nguided speed-up: {out['sets'][main_set]['speed_up']:.2f}x")
    if "football_broadcast" in out["sets"]:
        r = out["sets"]["football_broadcast"][f"score_{floor}"]
        print(f"guided recall: {r['guided']['recall']:.3f} vs {r['full']['recall']:.3f}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
