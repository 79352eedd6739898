import os
import pickle

import pytest
import torch

from ppl_vae.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ppl_vae.config import Config
from ppl_vae.data.spec import DataSpec
from ppl_vae.kinds import kind


def build_vae(model, shape):
    return kind(model.kind).build(model, DataSpec("test", shape=tuple(shape)))


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    cfg = Config()
    cfg.model.prior = {"name": "mixture", "k": 3}
    vae = build_vae(cfg.model, (64,))
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, vae, cfg.to_dict())
    payload = load_checkpoint(path)
    loaded = build_vae(Config.from_dict(payload["config"]).model, (64,))
    loaded.load_state_dict(payload["model"])
    x = (torch.rand(5, 64) > 0.5).float()
    with torch.no_grad():
        assert torch.equal(vae.reconstruct(x), loaded.reconstruct(x))
        assert torch.equal(vae.prior().log_prob(torch.ones(2, 10)), loaded.prior().log_prob(torch.ones(2, 10)))
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed away


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = None


@pytest.mark.parametrize("protocol", [2, 4])
def test_a_crafted_pickle_is_refused_without_running_its_payload(tmp_path, protocol):
    global MARKER
    MARKER = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": "ppl-vae/1", "model": Payload()}, f, protocol=protocol)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(path)
    assert not MARKER.exists()
    # the same file, unpickled unsafely, would have run its payload: the test can fail
    with open(path, "rb") as f:
        pickle.load(f)
    assert MARKER.exists()


def test_corrupted_and_foreign_files_are_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupted or not a plain"):
        load_checkpoint(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a ppl-vae checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def _tiny_run(tmp_path, *overrides):
    from ppl_vae.runs import load_config, train_run

    cfg = load_config("vae-digits", ["train.epochs=1", "eval.iwae_samples=5", "eval.n_test=10", "data.limit=200", *overrides])
    train_run(cfg, tmp_path / "run", progress=False, figures=False)
    return tmp_path / "run"


def test_a_checkpoint_holds_everything_a_resumed_run_needs(tmp_path):
    from ppl_vae.data.spec import DataSpec
    from ppl_vae.training.checkpoint import FORMAT, rng_state, set_rng_state

    run = _tiny_run(tmp_path, "objective={name='factor-vae', gamma=2.0, hidden=16, layers=2}")
    payload = load_checkpoint(run / "checkpoint.pt")
    assert payload["format"] == FORMAT and payload["epoch"] == 1 and payload["step"] > 0
    assert set(payload["objective"]) == {"discriminator", "discriminator_optimizer"}  # FactorVAE's own parameters
    assert payload["optimizer"]["state"] and set(payload["rng"]) >= {"torch", "numpy", "python"}
    assert payload["versions"]["torch"] == str(torch.__version__) and "pyro-ppl" in payload["versions"]
    spec = DataSpec.from_dict(payload["data_spec"])
    assert spec.source == "digits" and spec.shape == (64,) and spec.image_shape == (1, 8, 8)
    assert spec.n_classes == 10 and spec.sizes["train"] == 200 and spec.bin_width == 1.0  # binarized: bits of a 0/1 datum
    assert payload["config"]["objective"]["name"] == "factor-vae"
    # the random states restore: the same draws follow
    set_rng_state(payload["rng"])
    first = (torch.rand(3), __import__("numpy").random.rand(3).tolist(), __import__("random").random())
    set_rng_state(payload["rng"])
    assert torch.equal(first[0], torch.rand(3)) and first[1] == __import__("numpy").random.rand(3).tolist()
    assert first[2] == __import__("random").random()
    assert set(rng_state()) >= {"torch", "numpy", "python"}


def test_a_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import errno

    run = _tiny_run(tmp_path)
    before = (run / "checkpoint.pt").read_bytes()

    def full_disk(obj, f, *args, **kwargs):
        with open(f, "wb") as out:
            out.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    vae = build_vae(Config().model, (64,))
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(run / "checkpoint.pt", vae, Config().to_dict())
    assert (run / "checkpoint.pt").read_bytes() == before
    assert not list(run.glob(".*.tmp"))


def test_a_run_loads_and_samples_without_its_training_data(tmp_path):
    import numpy as np

    from ppl_vae.runs import load_config, load_run, sample_run, train_run

    data = tmp_path / "images.npy"
    np.save(data, np.random.default_rng(0).integers(0, 256, (120, 8, 8)).astype(np.uint8))
    cfg = load_config("vae-digits", ["train.epochs=1", "eval.iwae_samples=5", "data.name='array'", f"data.path='{data}'"])
    train_run(cfg, tmp_path / "run", progress=False, figures=False)
    data.unlink()  # the data specification in the checkpoint is enough to rebuild the model
    loaded = load_run(tmp_path / "run")
    assert loaded.spec.source == "array" and loaded.spec.image_shape == (1, 8, 8)
    assert sample_run(tmp_path / "run", n=16).read_bytes()[:4] == b"\x89PNG"
