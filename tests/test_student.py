"""The student: pretrained backbone loading, data contract and split, training to student.pt, inference."""
from __future__ import annotations

import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")
pytest.importorskip("timm")
pytest.importorskip("albumentations")
pytest.importorskip("pytorch_lightning")

from pseudolabel.coco import save_coco  # noqa: E402
from pseudolabel.detectors.base import Detections  # noqa: E402
from pseudolabel.records import Box, Dataset, Frame  # noqa: E402
from pseudolabel.student.callbacks import BackboneFreeze  # noqa: E402
from pseudolabel.student.data import (CenteredCrop, PseudoLabelDataModule, PseudoLabelDataset,  # noqa: E402
                                      split_by_video, split_frames, train_transform)
from pseudolabel.student.model import (StudentDetector, build_efficientnet_lite0_frcnn,  # noqa: E402
                                       efficientnet_lite0_weights_file)
from pseudolabel.student.module import DetectionModule, f1_from_counts, match_counts  # noqa: E402
from pseudolabel.student.train import train_student  # noqa: E402


@pytest.fixture(autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def pretrained_model():
    try:
        efficientnet_lite0_weights_file()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    return build_efficientnet_lite0_frcnn(pretrained=True)


def _package_state():
    return torch.load(efficientnet_lite0_weights_file(), map_location="cpu", weights_only=True)


def test_efficientnet_weights_really_load(pretrained_model):
    src = _package_state()
    body = pretrained_model.backbone.body
    # first, a deep and a BatchNorm-statistics tensor, mapped from lukemelas names onto timm's
    pairs = [("_conv_stem.weight", body.conv_stem.weight),
             ("_blocks.15._project_conv.weight", body.blocks[6][0].conv_pwl.weight),
             ("_bn0.running_mean", body.bn1.running_mean)]
    random_body = build_efficientnet_lite0_frcnn(pretrained=False).backbone.body
    for key, tensor in pairs:
        assert torch.equal(tensor, src[key]), key
    assert not torch.equal(random_body.conv_stem.weight, src["_conv_stem.weight"])
    # frozen by default, FPN and heads trainable; tf_efficientnet_lite0 expects inputs in [-1, 1]
    assert not any(p.requires_grad for p in body.parameters())
    assert all(p.requires_grad for p in pretrained_model.backbone.fpn.parameters())
    assert pretrained_model.transform.image_mean == [0.5, 0.5, 0.5]
    assert pretrained_model.roi_heads.box_predictor.cls_score.out_features == 2


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        build_efficientnet_lite0_frcnn(pretrained=True, weights_path=str(tmp_path / "absent.pth"))
    wrong = tmp_path / "wrong.pth"
    torch.save({"a.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(ValueError, match="tensors"):
        build_efficientnet_lite0_frcnn(pretrained=True, weights_path=str(wrong))


def test_forward_train_mode_returns_four_losses(pretrained_model):
    pretrained_model.train()
    images = [torch.rand(3, 128, 128), torch.rand(3, 128, 160)]
    targets = [{"boxes": torch.tensor([[40.0, 40.0, 52.0, 52.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    losses = pretrained_model(images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert all(torch.isfinite(v) and v.item() >= 0 for v in losses.values())
    pretrained_model.eval()


@pytest.mark.parametrize("n_videos", [2, 3, 5, 10, 17])
def test_split_by_video_is_disjoint_and_complete(n_videos):
    videos = [f"vid{i}" for i in range(n_videos)]
    for seed in range(6):
        train, val = split_by_video(videos * 3, val_fraction=0.2, seed=seed)  # repeats: one per frame
        assert set(train).isdisjoint(val)
        assert sorted(train + val) == sorted(videos)
        assert len(val) == min(n_videos - 1, max(1, round(0.2 * n_videos)))
    assert len({tuple(split_by_video(videos, seed=s)[1]) for s in range(10)}) > 1  # the seed matters


def test_split_frames_single_video_uses_a_time_block_with_a_gap():
    frames = [Frame(id=i + 1, file_name=f"{i}.jpg", width=64, height=64, video_id="only", frame_index=i)
              for i in range(40)]
    train, val = split_frames(frames, val_fraction=0.2, seed=3, gap_fraction=0.05)
    assert len(val) == 8 and set(train).isdisjoint(val)
    idx = sorted(i - 1 for i in val)
    assert idx == list(range(idx[0], idx[0] + 8))  # contiguous
    # 2 frames (5 % of 40) dropped on each side that has neighbours
    lost = 40 - len(train) - len(val)
    assert lost == (2 if idx[0] > 0 else 0) + (2 if idx[-1] < 39 else 0)
    assert all(abs(t - v) > 2 for t in train for v in val)
    # several videos: whole videos on one side
    frames2 = [Frame(id=i + 1, file_name="x", width=1, height=1, video_id=f"v{i % 4}", frame_index=i)
               for i in range(20)]
    tr, va = split_frames(frames2, val_fraction=0.25, seed=1)
    vids = lambda ids: {frames2[i - 1].video_id for i in ids}  # noqa: E731
    assert vids(tr).isdisjoint(vids(va)) and len(vids(va)) == 1 and len(tr) + len(va) == 20


def _synthetic_set(root, *, n=8, size=(180, 320), square=12, n_videos=4, seed=0):
    """JPEG frames with a bright square (every 4th frame empty) and their kept boxes."""
    rng = np.random.default_rng(seed)
    h, w = size
    frames, boxes = [], []
    for i in range(n):
        img = np.full((h, w, 3), 30, np.uint8)
        if i % 4 != 3:
            x, y = int(rng.integers(5, w - square - 5)), int(rng.integers(5, h - square - 5))
            cv2.circle(img, (x + square // 2, y + square // 2), square // 2, (255, 255, 255), -1)
            img[y + 2:y + square - 2, x + 2:x + square - 2] = 255
            boxes.append(Box(image_id=i + 1, xyxy=(x, y, x + square, y + square), score=0.9))
            if i == 0:  # a pruned box must not become a target
                boxes.append(Box(image_id=1, xyxy=(0, 0, 30, 30), decision="pruned", reason="test"))
        cv2.imwrite(str(root / f"f{i}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        frames.append(Frame(id=i + 1, file_name=f"f{i}.jpg", width=w, height=h, video_id=f"v{i % n_videos}",
                            frame_index=i))
    ds = Dataset(frames=frames, boxes=boxes)
    ds.renumber()
    return ds


def test_mined_negatives_are_drawn_first_and_cropped_around(tmp_path):
    """A student round's unconfirmed boxes on frames without a kept ball: those frames are the negatives drawn, their
    crops hold the box, which is background; the teacher's (round 0) unconfirmed boxes are not mined."""
    w, h, sq = 400, 300, 12
    frames, boxes = [], []
    for i in range(12):
        img = np.full((h, w, 3), 30, np.uint8)
        x, y = 40 + 25 * i, 40 + 15 * i
        if i < 6 or i in (6, 7, 8):
            img[y:y + sq, x:x + sq] = 255
        if i < 6:
            boxes.append(Box(image_id=i + 1, xyxy=(x, y, x + sq, y + sq), score=0.9, round=1))
        elif i in (6, 7, 8):  # a distractor the student (6, 7) or the teacher (8) fired on, no track confirmed
            b = Box(image_id=i + 1, xyxy=(x, y, x + sq, y + sq), score=0.9, round=0 if i == 8 else 2)
            b.prune("unconfirmed", pruned_round=b.round)
            boxes.append(b)
        cv2.imwrite(str(tmp_path / f"f{i}.jpg"), img)
        frames.append(Frame(id=i + 1, file_name=f"f{i}.jpg", width=w, height=h, video_id="v", frame_index=i))
    ds = Dataset(frames=frames, boxes=boxes)
    ids = [f.id for f in ds.frames]
    for seed in range(4):  # 6 positives at 0.25 -> 2 negatives: exactly the two frames holding a mined negative
        mined = PseudoLabelDataset(ds, tmp_path, ids, transform=train_transform(64, seed=seed),
                                   negatives_fraction=0.25, seed=seed, mined_negatives=["unconfirmed"])
        assert mined.frame_ids == ids[:8] and mined.n_negatives == 2
    for k in (6, 7):
        for _ in range(5):  # a 64-px crop of a 400x300 frame holds the 12-px box only when chosen around it
            image, target = mined[k]
            assert len(target["boxes"]) == 0 and image.max() > 0.5
    draws = {tuple(PseudoLabelDataset(ds, tmp_path, ids, negatives_fraction=0.25, seed=seed).frame_ids[6:])
             for seed in range(8)}
    assert len(draws) > 1 and all(len(d) == 2 for d in draws)  # off: 2 of the 6 negatives at random


def test_dataset_contract_and_boxes_stay_on_the_ball(tmp_path):
    ds = _synthetic_set(tmp_path, n=8, size=(300, 400), square=14)
    ids = [f.id for f in ds.frames]
    data = PseudoLabelDataset(ds, tmp_path, ids, transform=train_transform(128, seed=5), negatives_fraction=None)
    assert len(data) == 8 and data.n_negatives == 2 and data.n_positives == 6
    n_boxes = 0
    for k in range(len(data)):
        for _ in range(3):  # several random crops / flips
            img, tgt = data[k]
            assert img.dtype == torch.float32 and tuple(img.shape) == (3, 128, 128)
            assert 0.0 <= img.min() and img.max() <= 1.0
            assert tgt["boxes"].dtype == torch.float32 and tgt["boxes"].shape[1] == 4
            assert tgt["labels"].dtype == torch.int64 and torch.all(tgt["labels"] == 1)
            has_box = bool(data._boxes[data.frame_ids[k]].size)
            assert len(tgt["boxes"]) == (1 if has_box else 0)  # the crop contains the frame's ball; pruned ignored
            for x1, y1, x2, y2 in tgt["boxes"].round().int().tolist():
                assert (x2 - x1, y2 - y1) == (14, 14)  # native resolution: no rescaling
                inner = img[:, y1 + 3:y2 - 3, x1 + 3:x2 - 3]
                assert inner.mean() > img.mean() + 0.4  # ball 1.0 on background 0.12, up to +-20 % jitter
                n_boxes += 1
    assert n_boxes == 18
    # negatives_fraction: 6 positives, 0.25 -> round(6 / 3) = 2 negatives
    assert PseudoLabelDataset(ds, tmp_path, ids, negatives_fraction=0.0).n_negatives == 0
    assert PseudoLabelDataset(ds, tmp_path, ids, negatives_fraction=0.25).n_negatives == 2
    # validation crop: deterministic, centred on the box
    val = PseudoLabelDataset(ds, tmp_path, ids, transform=CenteredCrop(128), negatives_fraction=None)
    a, b = val[0], val[0]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1]["boxes"], b[1]["boxes"])
    bx1, by1, bx2, by2 = ds.boxes[0].xyxy
    x0 = int(np.clip(round((bx1 + bx2) / 2 - 64), 0, 400 - 128))
    y0 = int(np.clip(round((by1 + by2) / 2 - 64), 0, 300 - 128))
    assert a[1]["boxes"].tolist() == [pytest.approx([bx1 - x0, by1 - y0, bx2 - x0, by2 - y0], abs=1e-3)]


def test_scale_jitter_rescales_the_ball_and_its_box_together(tmp_path):
    ds = _synthetic_set(tmp_path, n=8, size=(300, 400), square=14)
    ids = [f.id for f in ds.frames if ds.boxes_by_image(kept_only=True).get(f.id)]
    data = PseudoLabelDataset(ds, tmp_path, ids, transform=train_transform(128, scale_jitter=0.5, seed=2),
                              negatives_fraction=None)
    sizes = []
    for k in range(len(data)):
        for _ in range(4):
            img, tgt = data[k]
            assert tuple(img.shape) == (3, 128, 128) and len(tgt["boxes"]) == 1
            x1, y1, x2, y2 = tgt["boxes"][0].tolist()
            assert x2 - x1 == pytest.approx(y2 - y1, abs=0.1)  # one factor for both axes (sizes rounded to pixels)
            assert 14 / 1.5 - 0.1 <= x2 - x1 <= 14 * 1.5 + 0.1
            inner = img[:, int(np.ceil(y1)) + 2:int(y2) - 2, int(np.ceil(x1)) + 2:int(x2) - 2]
            assert inner.mean() > img.mean() + 0.4  # the box still holds the (rescaled) ball
            sizes.append(x2 - x1)
    assert min(sizes) < 12 and max(sizes) > 16  # smaller and larger balls than the label's
    with pytest.raises(ValueError, match="scale_jitter"):
        train_transform(128, scale_jitter=-0.1)


def test_train_samples_per_epoch_fixes_the_epoch_length_whatever_the_number_of_labels(tmp_path):
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    labels = save_coco(_synthetic_set(frames_dir, n=8, size=(160, 288), square=12), tmp_path / "annotations.json")
    plain = PseudoLabelDataModule(labels, frames_dir, batch_size=2, crop_size=128, val_fraction=0.25)
    fixed = PseudoLabelDataModule(labels, frames_dir, batch_size=2, crop_size=128, val_fraction=0.25,
                                  train_samples_per_epoch=20)
    plain.setup(), fixed.setup()
    assert len(fixed.train_set) == len(plain.train_set) < 20
    assert len(plain.train_dataloader()) == -(-len(plain.train_set) // 2) and len(fixed.train_dataloader()) == 10
    images, targets = next(iter(fixed.train_dataloader()))
    assert len(images) == 2 and all(t["labels"].dtype == torch.int64 for t in targets)
    assert len(fixed.val_dataloader()) == len(plain.val_dataloader())


def test_match_counts_and_f1():
    gt = [[10, 10, 20, 20], [50, 50, 60, 60]]
    pred = [[10, 10, 20, 21], [11, 10, 21, 20], [100, 100, 110, 110], [50, 50, 60, 60]]
    scores = [0.9, 0.8, 0.95, 0.3]  # duplicate (2nd) is a FP; last is below 0.5
    assert match_counts(pred, scores, gt) == (1, 2, 1)
    assert match_counts([], [], gt) == (0, 0, 2)
    assert match_counts(pred[:1], [0.9], []) == (0, 1, 0)
    assert f1_from_counts(1, 2, 1) == pytest.approx((1 / 3, 0.5, 0.4))
    assert f1_from_counts(0, 0, 0) == (1.0, 1.0, 1.0)


def _tiny_model(**kw):
    return build_efficientnet_lite0_frcnn(pretrained=False, **kw)


def test_backbone_freeze_callback(tmp_path):
    model = _tiny_model(trainable_backbone=True)
    module = DetectionModule(model, functools.partial(torch.optim.AdamW, lr=1e-3))
    assert all(p.requires_grad for p in model.backbone.body.parameters())
    cb = BackboneFreeze(unfreeze_at_epoch=1, train_rpn=False)
    cb.freeze_before_training(module)
    assert not any(p.requires_grad for p in model.backbone.body.parameters())
    assert not any(p.requires_grad for p in model.rpn.parameters())
    assert all(p.requires_grad for p in model.backbone.fpn.parameters())
    assert all(p.requires_grad for p in model.roi_heads.parameters())
    opt = module.configure_optimizers()
    n_trainable = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n_trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    cb.finetune_function(module, 0, opt)
    assert len(opt.param_groups) == 1
    cb.finetune_function(module, 1, opt)
    assert len(opt.param_groups) == 2 and opt.param_groups[1]["lr"] == pytest.approx(1e-4)
    assert all(p.requires_grad for p in model.backbone.body.parameters())
    assert not any(p.requires_grad for p in model.rpn.parameters())


def test_fast_dev_run_writes_a_loadable_student(tmp_path):
    import pytorch_lightning as pl

    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    ds = _synthetic_set(frames_dir, n=8, size=(160, 288), square=12)
    labels = save_coco(ds, tmp_path / "annotations.json")

    seen = {}

    class Probe(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen["backbone_grad"] = any(p.requires_grad for p in pl_module.model.backbone.body.parameters())
            seen["fpn_grad"] = all(p.requires_grad for p in pl_module.model.backbone.fpn.parameters())
            seen["batch"] = (len(batch[0]), tuple(batch[0][0].shape))

    dm = functools.partial(PseudoLabelDataModule, batch_size=2, crop_size=128, val_fraction=0.25)
    module = functools.partial(DetectionModule, optimizer=functools.partial(torch.optim.AdamW, lr=1e-3,
                                                                            weight_decay=1e-4))
    path = train_student(pseudo_labels_path=labels, frames_dir=frames_dir, out_dir=tmp_path / "out",
                         model=functools.partial(_tiny_model, trainable_backbone=True), datamodule=dm,
                         module_factory=module, trainer_kwargs={"fast_dev_run": True, "enable_progress_bar": False},
                         callbacks=[BackboneFreeze(), Probe()], seed=0)
    assert path == tmp_path / "out" / "student.pt" and path.is_file()
    assert seen == {"backbone_grad": False, "fpn_grad": True, "batch": (2, (3, 128, 128))}

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert set(ckpt) == {"state_dict", "meta"}
    tr, va = ckpt["meta"]["train_video_ids"], ckpt["meta"]["val_video_ids"]
    assert set(tr).isdisjoint(va) and sorted(tr + va) == ["v0", "v1", "v2", "v3"] and len(va) == 1
    det = StudentDetector.from_checkpoint(path, model_factory=_tiny_model, score_threshold=0.0)
    assert det.name == "student"
    for k, v in det.model.state_dict().items():
        assert torch.equal(v, ckpt["state_dict"][k]), k
    frames = [cv2.cvtColor(cv2.imread(str(frames_dir / f"f{i}.jpg")), cv2.COLOR_BGR2RGB) for i in range(2)]
    out = det.predict(frames)
    assert len(out) == 2 and all(isinstance(d, Detections) for d in out)
    d = out[0]
    assert len(d) > 0 and d.features.shape == (len(d), 256) and d.features.dtype == np.float32
    assert np.all(d.labels == 1)
    assert np.all(d.boxes[:, 2] <= 288) and np.all(d.boxes[:, 3] <= 160)
    # the features are the box head's on exactly these boxes (same backbone pass, native scale)
    m = det.model
    with torch.inference_mode():
        x = torch.from_numpy(frames[0]).permute(2, 0, 1).float() / 255
        batch, _ = m.transform([x])
        feats = m.backbone(batch.tensors)
        ref = m.roi_heads.box_head(m.roi_heads.box_roi_pool(
            feats, [torch.as_tensor(d.boxes, dtype=torch.float32)], batch.image_sizes))
    np.testing.assert_allclose(d.features, ref.numpy(), rtol=1e-4, atol=1e-4)


def test_frames_past_max_size_are_shrunk_in_uint8_to_the_transforms_size():
    """A 640x360 frame for a max_size-320 student: cv2 shrinks it before the tensor conversion, and the
    boxes (mapped back to the frame) are those of torchvision's own float resize, up to uint8 rounding."""
    from pseudolabel.detectors.rcnn import to_tensors, two_stage_predict
    from pseudolabel.student.model import shrink_to_model_input
    from pseudolabel.synth import _render_frames

    torch.manual_seed(0)
    model = build_efficientnet_lite0_frcnn(pretrained=False, max_size=320, box_detections_per_img=30,
                                           box_score_thresh=0.0).eval()
    frames, _ = _render_frames(seed=3, venue="grass", n_frames=2, width=640, height=360, fps=25.0)
    small, factors = shrink_to_model_input(frames + [frames[0][:200, :300]], model.transform)
    assert [im.shape[:2] for im in small] == [(180, 320), (180, 320), (200, 300)]  # the last one fits already
    np.testing.assert_array_equal(factors[0], [2.0, 2.0, 2.0, 2.0])
    assert small[2] is not None and np.array_equal(factors[2], np.ones(4))
    with torch.inference_mode():
        batch, _ = model.transform(to_tensors(frames[:1]))
    assert tuple(batch.image_sizes[0]) == (180, 320)  # the size torchvision's resize gives

    got = StudentDetector(model, workers=1).predict(frames)
    ref, _ = two_stage_predict(model, to_tensors(frames))  # the transform resizes the float tensors
    for r, g in zip(ref, got, strict=True):
        rb, rs = r["boxes"].numpy(), r["scores"].numpy()
        assert len(rb) > 10 and np.all(g.boxes[:, 2] <= 640) and np.all(g.boxes[:, 3] <= 360)
        for box, score in zip(rb[:10], rs[:10], strict=True):  # the top boxes: each found again, same place and score
            err = np.abs(g.boxes - box).max(axis=1)
            j = int(np.argmin(err))
            assert err[j] < 0.5 and abs(g.scores[j] - score) < 1e-2, (box, g.boxes[j], score, g.scores[j])


def test_relabel_sees_large_frames_in_native_scale_tiles(tmp_path, pretrained_model):
    """relabel.native_tiles at student.model.scale 1: a 1280x720 frame reaches the student as tiles of at most
    max_size (640), never shrunk; a frame that fits is passed whole (scale 2, the default: the test below)."""
    from pseudolabel.detectors.tiling import TiledDetector
    from pseudolabel.pipeline import _student_relabeller
    from pseudolabel.student.model import save_student_checkpoint
    from tests.test_config import compose_cfg

    ckpt = save_student_checkpoint(pretrained_model, tmp_path / "student.pt")
    cfg = compose_cfg("runtime.backend=torch", "runtime.workers=1", "student.model.scale=1.0")
    det = _student_relabeller(cfg, ckpt)
    assert isinstance(det, TiledDetector) and det.tile_size == 640 and not det.full_frame
    seen = []
    inner_predict = det.detector.predict
    det.detector.predict = lambda crops: seen.extend(c.shape[:2] for c in crops) or inner_predict(crops)
    det.predict([np.zeros((720, 1280, 3), np.uint8), np.zeros((360, 640, 3), np.uint8)])
    from pseudolabel.detectors.tiling import tile_grid

    tiles = tile_grid(1280, 720, tile_size=640, overlap=0.25)
    assert seen == [(int(y2 - y1), int(x2 - x1)) for x1, y1, x2, y2 in tiles] + [(360, 640)]
    assert len(tiles) == 6 and all(max(s) <= 640 for s in seen)


def test_copy_paste_adds_soft_edged_balls_where_no_box_is():
    from pseudolabel.student.data import cut_patch, paste_patches

    src = np.zeros((100, 100, 3), np.uint8)
    src[40:50, 40:50] = 255  # a 10-px white ball
    patch, alpha, rel = cut_patch(src, (40, 40, 50, 50), context=1.5)
    assert patch.shape == (16, 16, 3) and rel.tolist() == [3, 3, 13, 13]
    assert alpha.max() == 1.0 and alpha[0, 0] == 0.0
    assert alpha[8, 8] == 1.0 and 0 < alpha[8, 1] < 1  # opaque centre, soft towards the edge
    bg = np.full((64, 64, 3), 30, np.uint8)
    rng = np.random.default_rng(0)
    out, boxes = paste_patches(bg, np.array([[0, 0, 20, 20]], float), [(patch, alpha, rel)], rng, max_pastes=3)
    assert len(boxes) >= 2 and np.allclose(boxes[0], [0, 0, 20, 20])
    for x1, y1, x2, y2 in boxes[1:]:
        assert x2 - x1 == pytest.approx(10) and y2 - y1 == pytest.approx(10)
        assert x1 >= 20 or y1 >= 20  # never on the existing box
        cx, cy = int((x1 + x2) / 2), int((y1 + y2) / 2)
        assert out[cy, cx].tolist() == [255, 255, 255]  # the ball is there
    assert (out == 30).mean() > 0.8  # the rest of the background untouched


@pytest.mark.parametrize("val_fraction", [0.25, 0.0])  # 0: the default, no validation, the final weights
def test_ema_decay_makes_student_pt_hold_the_averaged_weights(tmp_path, val_fraction):
    import pytorch_lightning as pl

    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    labels = save_coco(_synthetic_set(frames_dir, n=8, size=(160, 288), square=12), tmp_path / "annotations.json")
    after_first_step = {}

    class Probe(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == 1:
                after_first_step.update({k: v.detach().clone() for k, v in pl_module.model.state_dict().items()})

    def train(out, ema_decay, callbacks=()):
        dm = functools.partial(PseudoLabelDataModule, batch_size=2, crop_size=128, val_fraction=val_fraction)
        module = functools.partial(DetectionModule, optimizer=functools.partial(torch.optim.AdamW, lr=1e-2))
        path = train_student(pseudo_labels_path=labels, frames_dir=frames_dir, out_dir=tmp_path / out,
                             model=_tiny_model, datamodule=dm, module_factory=module,
                             trainer_kwargs={"max_steps": 4, "max_epochs": 1, "limit_val_batches": 1,
                                             "num_sanity_val_steps": 0, "enable_progress_bar": False},
                             callbacks=list(callbacks), seed=0, ema_decay=ema_decay)
        return torch.load(path, map_location="cpu", weights_only=True)

    raw = train("raw", None)
    # a decay this close to 1 keeps the average at its first value: the weights after the first step
    ema = train("ema", 1 - 1e-9, [Probe()])
    assert ema["meta"]["ema_decay"] == pytest.approx(1 - 1e-9) and raw["meta"]["ema_decay"] is None
    head = "roi_heads.box_predictor.cls_score.weight"
    assert not torch.allclose(raw["state_dict"][head], after_first_step[head])
    for k in (head, "rpn.head.conv.0.0.weight", "backbone.fpn.layer_blocks.0.0.weight"):
        assert torch.allclose(ema["state_dict"][k], after_first_step[k], atol=1e-6), k
    if val_fraction:  # the checkpoint that validation picks holds the averaged weights too (EMA's own hook)
        from pseudolabel.student.train import _load_lightning_weights

        best = _load_lightning_weights(tmp_path / "ema" / "checkpoints" / "best.ckpt")
        for k in (head, "rpn.head.conv.0.0.weight", "backbone.fpn.layer_blocks.0.0.weight"):
            assert torch.allclose(best[k], after_first_step[k], atol=1e-6), k
    else:
        assert ema["meta"]["weights"] == "last"


def test_without_validation_frames_the_student_trains_the_whole_schedule_and_keeps_the_final_weights(tmp_path):
    """val_fraction 0: every labelled video trains; no early stopping or checkpoint choice without a held-out set."""
    from pytorch_lightning.callbacks import EarlyStopping

    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    labels = save_coco(_synthetic_set(frames_dir, n=8, size=(160, 288), square=12), tmp_path / "annotations.json")
    dm = functools.partial(PseudoLabelDataModule, batch_size=2, crop_size=128, val_fraction=0.0,
                           train_samples_per_epoch=4)
    module = functools.partial(DetectionModule, optimizer=functools.partial(torch.optim.AdamW, lr=1e-3))
    path = train_student(pseudo_labels_path=labels, frames_dir=frames_dir, out_dir=tmp_path / "out",
                         model=_tiny_model, datamodule=dm, module_factory=module,
                         trainer_kwargs={"max_steps": 6, "max_epochs": -1, "enable_progress_bar": False},
                         callbacks=[EarlyStopping(monitor="val/f1", mode="max", patience=1)], seed=0)
    meta = torch.load(path, map_location="cpu", weights_only=True)["meta"]
    assert meta["val_video_ids"] == [] and sorted(meta["train_video_ids"]) == ["v0", "v1", "v2", "v3"]
    assert meta["weights"] == "last" and meta["best_val_f1"] is None
    assert meta["global_step"] == 6 and meta["epochs"] == 3  # two batches an epoch, whatever the labels


def test_scale_feeds_images_upscaled_and_maps_boxes_back_to_the_frame(tmp_path):
    """student.model.scale=2: a 160x90 image reaches the network as 320x180 (uint8 path and torchvision's float
    transform alike), boxes come back in the image's own pixels, and relabel tiles shrink to max_size / scale."""
    from pseudolabel.detectors.rcnn import to_tensors, two_stage_predict
    from pseudolabel.detectors.tiling import TiledDetector
    from pseudolabel.pipeline import _student_relabeller
    from pseudolabel.student.model import save_student_checkpoint, shrink_to_model_input
    from pseudolabel.synth import _render_frames
    from tests.test_config import compose_cfg

    torch.manual_seed(0)
    model = build_efficientnet_lite0_frcnn(pretrained=False, scale=2.0, max_size=320, box_detections_per_img=30,
                                           box_score_thresh=0.0).eval()
    frames, _ = _render_frames(seed=3, venue="grass", n_frames=1, width=160, height=90, fps=25.0)
    fed, factors = shrink_to_model_input(frames + [np.zeros((300, 200, 3), np.uint8)], model.transform)
    assert [im.shape[:2] for im in fed] == [(180, 320), (320, 213)]  # the second: capped at max_size
    np.testing.assert_array_equal(factors[0], [0.5, 0.5, 0.5, 0.5])
    with torch.inference_mode():
        batch, _ = model.transform(to_tensors(frames))
    assert tuple(batch.image_sizes[0]) == (180, 320)
    ref = two_stage_predict(model, to_tensors(frames))[0][0]  # torchvision's float resize and postprocess
    floats = StudentDetector(model, workers=1, uint8_resize=False).predict(frames)[0]
    np.testing.assert_allclose(floats.boxes, ref["boxes"].numpy(), atol=1e-3)
    got = StudentDetector(model, workers=1).predict(frames)[0]  # cv2 upscales the uint8 image instead
    assert len(got.boxes) > 5 and got.boxes[:, 2].max() <= 160 and got.boxes[:, 3].max() <= 90
    near = [np.abs(got.boxes - box).max(axis=1).min() < 0.5 for box in ref["boxes"].numpy()[:5]]
    assert sum(near) >= 3, near  # an untrained model's near-tied scores may reorder a box out of the top 30

    ckpt = save_student_checkpoint(model, tmp_path / "student.pt")
    cfg = compose_cfg("runtime.backend=torch", "runtime.workers=1", "student.model.scale=2.0",
                      "student.model.max_size=320", "student.model.pretrained=false")
    det = _student_relabeller(cfg, ckpt)
    assert isinstance(det, TiledDetector) and det.tile_size == 160
