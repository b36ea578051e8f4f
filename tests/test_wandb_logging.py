import pytest

from pseudolabel.wandb_logging import WandbLogger, is_logged_in, resolve_mode


def test_auto_mode_is_offline_without_credentials(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    assert not is_logged_in()
    assert resolve_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_mode("auto") == "online"
    with pytest.raises(ValueError):
        resolve_mode("sometimes")


def test_offline_run_is_written_under_the_experiment(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    logger = WandbLogger(project="pseudolabel-test", mode="auto", dir=tmp_path)
    logger.start(experiment="exp", round=3, config={"a": 1})
    run_id = logger.run.id
    logger.log({"round/n_boxes": 12})
    logger.finish()
    runs = list((tmp_path / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb"))


def test_disabled_logger_does_nothing(tmp_path):
    logger = WandbLogger(mode="disabled", dir=tmp_path)
    logger.start(experiment="e", round=0)
    logger.log({"x": 1})
    logger.finish()
    assert not (tmp_path / "wandb").exists()


def _round_dataset(tmp_path):
    import cv2
    import numpy as np

    from pseudolabel.records import Box, Dataset, Frame

    frames_dir = tmp_path / "frames"
    (frames_dir / "v").mkdir(parents=True)
    frames = []
    for i in range(3):
        cv2.imwrite(str(frames_dir / "v" / f"{i:06d}.jpg"), np.full((60, 80, 3), 40 * i, np.uint8))
        frames.append(Frame(id=i + 1, file_name=f"v/{i:06d}.jpg", width=80, height=60, video_id="v", frame_index=i))
    boxes = [
        Box(image_id=1, xyxy=(10, 10, 20, 20), score=0.9, round=1, source="student", id=1,
            extra={"merge_status": "new"}),
        Box(image_id=1, xyxy=(40, 10, 50, 20), score=0.8, round=0, source="teacher", id=2,
            extra={"merge_status": "confirmed"}),
        Box(image_id=2, xyxy=(10, 10, 12, 30), score=0.7, round=1, source="student", id=3,
            decision="pruned", reason="aspect", extra={"merge_status": "new"}),
        Box(image_id=2, xyxy=(30, 30, 40, 40), score=0.6, round=1, source="track_interp", id=4,
            extra={"merge_status": "new"}),
    ]
    return Dataset(frames=frames, boxes=boxes), frames_dir


class _RunSpy:
    """Wraps the real ``wandb.Run`` and records what our code hands to its public methods."""

    def __init__(self, run, record):
        self._run, self._record = run, record

    def __getattr__(self, name):
        return getattr(self._run, name)

    def log(self, data, *args, **kwargs):
        self._record["history"].append(dict(data))
        return self._run.log(data, *args, **kwargs)

    def log_artifact(self, artifact, *args, aliases=None, **kwargs):
        self._record["artifacts"].append({
            "name": artifact.name, "type": artifact.type, "metadata": dict(artifact.metadata),
            "aliases": list(aliases or []), "files": sorted(artifact.manifest.entries)})
        return self._run.log_artifact(artifact, *args, aliases=aliases, **kwargs)

    def use_artifact(self, name, *args, **kwargs):
        self._record["use_artifacts"].append(name)
        return self._run.use_artifact(name, *args, **kwargs)

    @property
    def summary(self):
        record, summary = self._record, self._run.summary

        class _Summary:
            def update(self, values):
                record["summary"].update(values)
                summary.update(values)

        return _Summary()


def test_log_round_offline_records_scalars_histograms_table_and_artifacts(tmp_path, monkeypatch):
    """Checks what we hand to wandb's public API (``init``, ``Run.log``, ``Run.summary``, ``log_artifact``,
    ``Histogram``, ``Table``) while a real offline run takes it: no wandb internal file layout is read."""
    import wandb

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    record = {"init": {}, "history": [], "summary": {}, "artifacts": [], "use_artifacts": []}
    real_init = wandb.init

    def spying_init(**kwargs):
        record["init"] = kwargs
        return _RunSpy(real_init(**kwargs), record)

    monkeypatch.setattr(wandb, "init", spying_init)
    ds, frames_dir = _round_dataset(tmp_path)
    (tmp_path / "annotations.json").write_text("{}")
    (tmp_path / "metrics.json").write_text("{}")
    (tmp_path / "student.pt").write_bytes(b"weights")
    metrics = {"round": 1, "n_boxes": 3, "n_pruned": 1, "pruned_by_reason": {"aspect": 1}, "f1": 0.5,
               "precision": 0.6, "recall": 0.4, "at_iou_0.3": {"f1": 0.7}}
    logger = WandbLogger(project="pseudolabel-test", mode="auto", dir=tmp_path / "wb", table_frames=2)
    assert logger.mode == "offline"
    logger.log_round(experiment="my exp", round=1, metrics=metrics, dataset=ds, frames_dir=frames_dir,
                     dataset_files={"annotations.json": tmp_path / "annotations.json",
                                    "metrics.json": tmp_path / "metrics.json"},
                     checkpoint=tmp_path / "student.pt", config={"seed": 0})
    (run_dir,) = (tmp_path / "wb" / "wandb").glob("offline-run-*")  # the real offline run was written
    assert any(run_dir.glob("run-*.wandb"))
    init = record["init"]
    assert (init["group"], init["job_type"], init["name"], init["mode"]) == ("my exp", "round", "my exp/round_1",
                                                                             "offline")
    logged = {k: v for row in record["history"] for k, v in row.items()}
    assert logged["round/f1"] == 0.5 and logged["round/f1@iou0.3"] == 0.7
    assert logged["pruned/aspect"] == 1
    assert logged["boxes/kept: new"] == 1 and logged["boxes/kept: confirmed"] == 1
    assert logged["boxes/kept: interpolated"] == 1 and logged["boxes/pruned: aspect"] == 1
    assert isinstance(logged["hist/kept_score"], wandb.Histogram)
    assert sum(logged["hist/kept_width"].histogram) == 3
    table = logged["samples"]
    assert isinstance(table, wandb.Table) and len(table.data) == 2
    assert table.columns[:3] == ["video_id", "frame_index", "image"]
    # most interesting first: frame 1 (a pruned and an interpolated box) before frame 0 (one new box)
    assert [r[1] for r in table.data] == [1, 0]
    assert record["summary"]["f1"] == 0.5
    arts = {a["name"]: a for a in record["artifacts"]}
    assert arts["my-exp-dataset"]["files"] == ["annotations.json", "metrics.json"]
    assert set(arts["my-exp-dataset"]["aliases"]) >= {"round_1", "latest"}
    assert arts["my-exp-dataset"]["metadata"]["parent"] == "my-exp-dataset:round_0"
    assert arts["my-exp-student"]["type"] == "model" and arts["my-exp-student"]["files"] == ["student.pt"]
    assert record["use_artifacts"] == []  # W&B refuses use_artifact offline


def test_log_round_online_uses_previous_round_artifact(tmp_path, monkeypatch):
    import wandb

    calls = []

    class FakeRun:
        summary = {}

        def use_artifact(self, name):
            calls.append(("use", name))

        def log(self, data):
            calls.append(("log", sorted(data)))

        def log_artifact(self, art, aliases):
            calls.append(("artifact", art.name, tuple(aliases)))

        def finish(self):
            calls.append(("finish",))

    monkeypatch.setattr(wandb, "init", lambda **kw: FakeRun())
    ds, frames_dir = _round_dataset(tmp_path)
    (tmp_path / "a.json").write_text("{}")
    logger = WandbLogger(mode="online", dir=tmp_path)
    logger.log_round(experiment="e", round=2, metrics={"n_boxes": 3}, dataset=ds, frames_dir=frames_dir,
                     dataset_files={"annotations.json": tmp_path / "a.json"})
    assert calls[0] == ("use", "e-dataset:round_1")
    assert ("artifact", "e-dataset", ("round_2", "latest")) in calls
    assert not [c for c in calls if c[0] == "artifact" and c[1] == "e-student"]
    assert calls[-1] == ("finish",)


def test_review_classes_and_sample_frames():
    from pseudolabel.records import Box, Dataset, Frame
    from pseudolabel.round_log import class_counts, review_class, sample_frames

    frames = [Frame(id=i, file_name=f"{i}.jpg", width=10, height=10, video_id="v", frame_index=i) for i in range(1, 6)]
    boxes = [Box(image_id=2, xyxy=(0, 0, 2, 2), round=0, id=1),
             Box(image_id=3, xyxy=(0, 0, 2, 2), round=0, id=2, decision="pruned", reason="static"),
             Box(image_id=3, xyxy=(4, 4, 6, 6), round=0, id=3)]
    ds = Dataset(frames=frames, boxes=boxes)
    assert review_class(boxes[0], round=0) == "kept: new"
    assert review_class(boxes[0], round=1) == "kept: confirmed"
    assert review_class(boxes[1], round=0) == "pruned: static"
    assert class_counts(ds, round=0) == {"kept: new": 2, "pruned: static": 1}
    assert sample_frames(ds, round=0, n=3) == [3, 2, 1]  # most boxes first, then one negative
    assert sample_frames(ds, round=0, n=1) == [3]
