"""The HTML dashboard (pseudolabel.report): its tables, and the built page in a real headless Chromium."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from pseudolabel.coco import save_coco
from pseudolabel.records import Box, Dataset, Frame
from pseudolabel.report import data as D
from pseudolabel.report.embed import cosine_knn, pixel_features, project_2d
from pseudolabel.report.build import build_report, suspect_frames

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REASONS = ("size", "static", "feature_outlier")


# ------------------------------------------------------------------------------ a tiny experiment
def _frame_image(rng, colour, ball):
    import cv2

    im = np.empty((120, 160, 3), np.uint8)
    im[:] = colour
    im = np.clip(im.astype(int) + rng.integers(-12, 13, im.shape), 0, 255).astype(np.uint8)
    if ball is not None:
        cv2.circle(im, ball, 5, (250, 250, 250), -1)
    return im


def make_experiment(root: Path, *, n_frames: int = 4) -> Path:
    """``root/exp``: 2 videos x ``n_frames`` synthetic JPEGs, rounds 0 and 1 with kept and pruned boxes
    (reasons :data:`REASONS`) and metrics with P/R/F1/AP50."""
    import cv2

    rng = np.random.default_rng(0)
    exp = root / "exp"
    frames, image_id = [], 0
    for v, colour in (("vid_a", (40, 120, 40)), ("vid_b", (150, 110, 70))):
        for i in range(n_frames):
            image_id += 1
            ball = (30 + 25 * i, 40 + 10 * i)
            rel = f"{v}/{i:06d}.jpg"
            (exp / "frames" / v).mkdir(parents=True, exist_ok=True)
            im = _frame_image(rng, colour, ball)
            cv2.imwrite(str(exp / "frames" / rel), cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
            frames.append(Frame(id=image_id, file_name=rel, width=160, height=120, video_id=v, frame_index=i))
    for k in (0, 1):
        boxes = []
        for f in frames:
            x, y = 30 + 25 * f.frame_index, 40 + 10 * f.frame_index
            kept_here = not (k == 0 and f.video_id == "vid_b" and f.frame_index == n_frames - 1)  # one negative
            boxes.append(Box(image_id=f.id, xyxy=(x - 6, y - 6, x + 6, y + 6), score=0.6 + 0.05 * f.frame_index,
                             round=k, decision="kept" if kept_here else "pruned",
                             reason="" if kept_here else "static"))
            reason = REASONS[(f.id + k) % len(REASONS)]
            b = Box(image_id=f.id, xyxy=(100, 10, 130 + 5 * f.frame_index, 30), score=0.4, round=k)
            b.prune(reason)
            boxes.append(b)
        ds = Dataset(frames=frames, boxes=boxes)
        ds.renumber()
        rdir = exp / f"round_{k}"
        save_coco(ds, rdir / "annotations.json")
        if k == 1:  # a student round: its labels carry detector features
            save_coco(ds, rdir / "labels.json")
            ids = np.array([b.id for b in ds.boxes])
            np.savez(rdir / "features.npz", ids=ids, features=rng.normal(size=(len(ids), 16)).astype(np.float32))
        counts = D.round_counts(ds)
        metrics = {"round": k, **counts, "precision": 0.8 + 0.1 * k, "recall": 0.7 + 0.1 * k,
                   "f1": 0.75 + 0.1 * k, "ap50": 0.6 + 0.1 * k, "ap": None,
                   "per_video": {"vid_a": {"precision": 1.0, "recall": 0.5, "f1": 0.667}}}
        (rdir / "metrics.json").write_text(json.dumps(metrics))
    return exp


@pytest.fixture
def experiment(tmp_path) -> Path:
    return make_experiment(tmp_path)


# ------------------------------------------------------------------------------------ pure tables
def test_curves_table_aligns_rounds_and_reasons():
    t = D.curves_table({1: {"n_boxes": 5, "n_pruned": 3, "pruned_by_reason": {"size": 2, "static": 1},
                            "precision": 0.5},
                        0: {"n_boxes": 4, "n_pruned": 1, "pruned_by_reason": {"static": 1}}})
    assert t["rounds"] == [0, 1] and t["kept"] == [4, 5] and t["pruned"] == [1, 3]
    assert t["reasons"] == {"static": [1, 1], "size": [0, 2]} or t["reasons"] == {"size": [0, 2], "static": [1, 1]}
    assert t["quality"] == {"precision": [None, 0.5]}  # only metrics some round has; None where absent


def test_per_video_rows_count_negatives(experiment):
    rd = D.load_round(experiment, 0)
    rows = {r["video"]: r for r in D.per_video_rows(rd.ds)}
    assert rows["vid_a"] == {"video": "vid_a", "frames": 4, "kept": 4, "pruned": 4, "negatives": 0,
                             "reasons": rows["vid_a"]["reasons"]}
    assert rows["vid_b"]["kept"] == 3 and rows["vid_b"]["negatives"] == 1
    assert rows["vid_b"]["reasons"]["static"] >= 1
    assert sum(r["pruned"] for r in rows.values()) == rd.metrics["n_pruned"] == 9
    with_q = {r["video"]: r for r in D.per_video_rows(rd.ds, rd.metrics["per_video"])}
    assert with_q["vid_a"]["f1"] == 0.667 and with_q["vid_b"]["f1"] is None


def test_selection_is_bounded_and_keeps_rare_groups():
    boxes = [Box(image_id=1, xyxy=(0, 0, 1, 1), score=i / 100, id=i) for i in range(100)]
    rare = Box(image_id=1, xyxy=(0, 0, 1, 1), score=0.5, id=200, decision="pruned", reason="static")
    sel = D.select_crops(boxes + [rare], per_group=5)
    assert list(sel) == ["kept", "static"] and len(sel["kept"]) == 5 and sel["static"] == [rare]
    assert sel["kept"][0].score == 0.0 and sel["kept"][-1].score == 0.99  # spread over the score range
    pts = D.select_map_boxes(boxes + [rare], max_points=10)
    assert len(pts) == 10 and rare in pts
    assert D.allocate([100, 1, 3], 10) == [6, 1, 3]


def test_map_features_follows_fused_boxes():
    frames = [Frame(id=1, file_name="a/0.jpg", width=100, height=100, video_id="a", frame_index=0)]
    labels = Dataset(frames=frames, boxes=[Box(image_id=1, xyxy=(10, 10, 20, 20), id=7, round=1),
                                           Box(image_id=1, xyxy=(50, 50, 60, 60), id=8, round=1)])
    merged_frames = [Frame(id=3, file_name="a/0.jpg", width=100, height=100, video_id="a", frame_index=0)]
    ds = Dataset(frames=merged_frames, boxes=[
        Box(image_id=3, xyxy=(11, 10, 21, 20), id=1, round=1),  # moved by the merge: still box 7
        Box(image_id=3, xyxy=(50, 50, 60, 60), id=2, round=0),  # an earlier round's box: no feature
        Box(image_id=3, xyxy=(80, 80, 90, 90), id=3, round=1)])  # nothing under it
    feats = {7: np.array([1.0, 0.0]), 8: np.array([0.0, 1.0])}
    out = D.map_features(ds, labels, feats, round=1)
    assert set(out) == {1} and out[1].tolist() == [1.0, 0.0]
    assert D.iou([(0, 0, 2, 2)], [(1, 0, 3, 2), (5, 5, 6, 6)]).tolist() == [[pytest.approx(1 / 3), 0.0]]


def test_knn_and_suspects():
    X = np.array([[1.0, 0, 0], [0.9, 0.1, 0], [0, 1.0, 0], [0, 0.9, 0.1]])
    idx, sim = cosine_knn(X, k=1)
    assert idx[:, 0].tolist() == [1, 0, 3, 2]
    assert np.all(np.abs(sim) <= 1 + 1e-9) and sim[0, 0] == pytest.approx(sim[1, 0])  # symmetric
    idx3, sim3 = cosine_knn(X, k=5)  # capped at N - 1, by decreasing similarity, self excluded
    assert idx3.shape == (4, 3) and np.all(np.diff(sim3, axis=1) <= 0)
    assert all(i not in row for i, row in enumerate(idx3.tolist()))
    entries = [{"kept": 0, "nbrs": [[1, 0.9], [2, 0.8]]}, {"kept": 1, "nbrs": [[0, 0.9]]},
               {"kept": 1, "nbrs": [[0, 0.8]]}, {"kept": 0, "nbrs": [[0, 0.9]]}]
    assert suspect_frames(entries, n=5) == [0]  # frame 3's neighbour has no box either
    xy, var = project_2d(pixel_features([np.full((8, 8, 3), v, np.uint8) for v in (0, 80, 160, 240)]))
    assert xy.shape == (4, 2) and var[0] > 0.9


def test_build_writes_bounded_files(experiment):
    page = build_report(experiment, crops_per_group=2, max_points=50)
    assert page == experiment / "report.html" and page.is_file()
    html = page.read_text()
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html
    crops = sorted((experiment / "report_files" / "crops").rglob("*.jpg"))
    assert crops and (experiment / "report_files" / "plotly.min.js").stat().st_size > 1_000_000
    for k in (0, 1):
        n_groups = len(D.groups(D.load_round(experiment, k).ds.boxes))
        assert html.count(f'src="report_files/crops/round_{k}/') <= 2 * n_groups
    assert len(list((experiment / "report_files" / "thumbs").glob("*.jpg"))) == 8
    # round 0 (no features.npz) is mapped by crop pixels, round 1 by its detector features
    assert html.count("downsampled crop pixels") == 1 and html.count("per-box features of the detector itself") == 1


def test_missing_rounds_is_a_clear_error(tmp_path):
    from pseudolabel.report.build import ReportError

    with pytest.raises(ReportError, match="no round"):
        build_report(tmp_path)
    exp = make_experiment(tmp_path, n_frames=2)
    (exp / "frames" / "vid_b" / "000001.jpg").unlink()
    with pytest.raises(ReportError, match="000001.jpg"):
        build_report(exp)


# ------------------------------------------------------------------------------- headless browser
def _playwright():
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright not installed (pip install playwright; the Debian chromium is used)")
    return sync_playwright


@pytest.mark.slow  # starts a browser
def test_report_in_headless_chromium(experiment, tmp_path):
    sync_playwright = _playwright()
    page_path = build_report(experiment, crops_per_group=3)
    errors, requests = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_path.resolve().as_uri(), wait_until="load")
            page.wait_for_selector("#curve-counts svg.main-svg", timeout=15_000)
            page.wait_for_function("document.querySelectorAll('#knn-neighbours img').length > 0")
            page.wait_for_function("Array.from(document.images).every(i => i.complete)")

            # everything came from disk; every image decoded
            assert [u for u in requests if not u.startswith(("file:", "data:", "blob:"))] == []
            broken = page.evaluate("Array.from(document.images).filter(i => !(i.naturalWidth > 0))"
                                   ".map(i => i.getAttribute('src'))")
            n_images = page.evaluate("document.images.length")
            assert n_images > 10 and broken == []
            # plots rendered: the two curves and the visible round's embedding map
            assert page.locator(".js-plotly-plot").count() >= 4
            for plot in ("#curve-counts", "#curve-quality", "#map-1"):
                assert page.locator(f"{plot} svg.main-svg").count() > 0, plot
                assert page.locator(f"{plot} .scatterlayer .trace").count() > 0, plot
            # ... at the size of their container (a plot drawn before the layout settled overflows it)
            page.wait_for_function("['curve-counts', 'curve-quality', 'map-1'].every(id => {"
                                   " const g = document.getElementById(id);"
                                   " return Math.abs(g._fullLayout.width - g.getBoundingClientRect().width) < 2; })",
                                   timeout=5_000)
            assert page.locator("#videos [data-round='1'] th", has_text="F1").count() == 1
            # clicking a point of the map shows that box's crop next to it
            page.locator("#map-1").scroll_into_view_if_needed()
            point = page.locator("#map-1 .scatterlayer .point").first.bounding_box()
            page.mouse.move(point["x"] + point["width"] / 2, point["y"] + point["height"] / 2)
            page.wait_for_selector("#map-1 .hoverlayer .hovertext", timeout=5_000)  # plotly clicks what it hovers
            page.mouse.down()
            page.mouse.up()
            page.wait_for_selector("#map-preview-1 img", timeout=5_000)
            assert "report_files/crops/round_1/" in page.get_attribute("#map-preview-1 img", "src")

            crops = page.locator("figure.crop:visible")
            latest = crops.count()
            assert latest > 0
            assert page.locator("#crops [data-round='1']").is_visible()
            assert not page.locator("#crops [data-round='0']").is_visible()
            # the reason filter hides the pruned groups' crops ...
            for reason in REASONS:
                page.uncheck(f"input.reason-filter[value='{reason}']")
            only_kept = crops.count()
            assert 0 < only_kept < latest
            assert page.locator(".crop-group[data-group='size']:visible").count() == 0
            # ... and the round selector switches round (round 0 has a 'static' prune the filter shows)
            page.click("#reasons-all")
            page.select_option("#round-select", "0")
            assert page.locator("#crops [data-round='0']").is_visible()
            assert not page.locator("#crops [data-round='1']").is_visible()
            assert page.locator("#map-0 svg.main-svg").count() > 0
            assert page.locator("#videos [data-round='0'] tbody tr:visible").count() == 3  # 2 videos + total
            # frames like this one: neighbours are listed and clicking one makes it the query
            first = page.locator("#knn-query figcaption").inner_text()
            page.locator("#knn-neighbours figure").first.click()
            assert page.locator("#knn-query figcaption").inner_text() != first

            page.evaluate("window.scrollTo(0, 0)")
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            if os.environ.get("REPORT_SCREENSHOT"):
                shutil.copyfile(shot, os.environ["REPORT_SCREENSHOT"])
        finally:
            browser.close()
    assert errors == []


def test_stage_report_reads_its_config(experiment):
    from omegaconf import OmegaConf

    from pseudolabel.report.build import ReportError, report_from_config

    cfg = OmegaConf.create({"exp": "tiny", "paths": {"exp_dir": str(experiment),
                                                     "frames_dir": str(experiment / "frames")},
                            "report": {"crops_per_group": 1, "max_frames": 3}})
    page = report_from_config(cfg)
    html = page.read_text()
    assert "Label-quality report: tiny" in html
    assert html.count('src="report_files/crops/round_1/') == len(D.groups(D.load_round(experiment, 1).ds.boxes))
    assert len(list((experiment / "report_files" / "thumbs").glob("*.jpg"))) == 3  # old thumbs removed
    cfg.report = {"crops_per_grup": 1}
    with pytest.raises(ReportError, match="crops_per_grup"):
        report_from_config(cfg)


def test_crops_say_whether_they_are_a_ground_truth_ball(experiment):
    """With ground truth, "pruned but true" and "kept but false" are visible on every crop and per group."""
    from pseudolabel.coco import load_coco
    from pseudolabel.records import Box, Dataset

    ds = load_coco(experiment / "round_0" / "annotations.json")
    # the ball of every frame is ground truth; the pruned junk boxes on the right are not
    gt = Dataset(frames=ds.frames, boxes=[Box(image_id=f.id, xyxy=(24 + 25 * f.frame_index, 34 + 10 * f.frame_index,
                                                                   36 + 25 * f.frame_index, 46 + 10 * f.frame_index),
                                              id=f.id) for f in ds.frames])
    assert D.ground_truth_matches(ds, gt, max_centre_distance=4.0) == \
        {b.id for b in ds.boxes if b.xyxy[0] < 100}
    html = build_report(experiment, crops_per_group=50, max_points=50, ground_truth=gt).read_text()
    assert "✓ ball" in html and "✗ no ball" in html
    # round 0's one pruned ball (reason static) shows as a ball among that reason's junk boxes
    assert "against ground truth:\n        1 ball, 3 no ball" in html
    assert "against ground truth:\n        7 ball, 0 no ball" in html  # round 0's kept balls
    plain = build_report(experiment, crops_per_group=50, max_points=50).read_text()
    assert "✓ ball" not in plain and " no ball" not in plain
