import os
import pickle

import pytest
import torch

from ppl_vae.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ppl_vae.config import Config, build_vae


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
