"""Checkpoints: plain state, atomic writes, weights_only reads, identity checks."""

from __future__ import annotations

import pytest
import torch

from ganrun.errors import UserError
from ganrun.train import checkpoint as ckpt

ID = {"model": "mlp", "shape": [2], "num_classes": 0, "conditional": False}


def sample_state() -> dict:
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters())
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    return {"step": 7, "nimg": 70, "G": net.state_dict(), "D": net.state_dict(), "opt_G": opt.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "cuda": [],
                                                      "data": {"epoch": 0, "position": 1,
                                                               "generator": torch.Generator().get_state()}}, "config": {"seed": 0, "model": {"name": "mlp"}},
            "overrides": ["dataset=ring8"], "model_id": ID}


def test_round_trip_is_exact_and_leaves_no_temp_files(tmp_path):
    state = sample_state()
    path = tmp_path / "checkpoints" / "last.pt"
    ckpt.save_checkpoint(path, state)
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]
    loaded = ckpt.load_checkpoint(tmp_path)  # a run dir resolves to checkpoints/last.pt
    assert loaded["format_version"] == ckpt.FORMAT_VERSION and loaded["step"] == 7
    for k, v in state["G"].items():
        assert torch.equal(loaded["G"][k], v)
    assert loaded["opt_G"]["state"][0]["exp_avg"].shape == (2, 3)
    assert loaded["overrides"] == ["dataset=ring8"]


def test_overwrite_keeps_the_old_file_until_the_new_one_is_complete(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    ckpt.save_checkpoint(path, sample_state())
    before = path.read_bytes()

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(UserError, match=r"cannot write checkpoint .*last\.pt: No space left on device"):
        ckpt.save_checkpoint(path, sample_state())
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_missing_foreign_and_newer_checkpoints_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        ckpt.load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(UserError, match="no checkpoint in"):
        ckpt.load_checkpoint(tmp_path)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(UserError, match="not a ganrun checkpoint"):
        ckpt.load_checkpoint(tmp_path / "foreign.pt")
    state = sample_state()
    ckpt.save_checkpoint(tmp_path / "new.pt", state)
    raw = torch.load(tmp_path / "new.pt", weights_only=True)
    raw["format_version"] = ckpt.FORMAT_VERSION + 1
    torch.save(raw, tmp_path / "new.pt")
    with pytest.raises(UserError, match="newer than this ganrun reads"):
        ckpt.load_checkpoint(tmp_path / "new.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match="cannot load checkpoint"):
        ckpt.load_checkpoint(tmp_path / "junk.pt")


def test_identity_mismatch_names_the_difference(tmp_path):
    state = {**sample_state(), "path": "x.pt"}
    ckpt.check_identity(state, dict(ID))
    with pytest.raises(UserError, match=r"another model \(model: checkpoint 'mlp' vs config 'dcgan'"):
        ckpt.check_identity(state, {**ID, "model": "dcgan"})
