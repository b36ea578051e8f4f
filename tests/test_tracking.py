import pytest

from pseudolabel.tracking import WandbLogger, is_logged_in, resolve_mode


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
