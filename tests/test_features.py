"""Feature networks: the domain classifier (training, cache, extraction) and the FID Inception."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch

import ganrun.evaluation.cache as cache_mod
from ganrun.errors import UserError
from ganrun.evaluation import (
    DomainClassifier,
    data_fingerprint,
    default_cache_dir,
    extract,
    extract_features,
    fit_domain_classifier,
    load_or_fit_classifier,
    no_tf32,
    to_signed_unit_range,
)


def blob_dataset(n: int, seed: int, channels: int = 1, size: int = 16, classes: int = 4):
    """uint8 (n, C, S, S) noise images in [0, 60) with a bright square in the quadrant of their class."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    images = torch.randint(0, 60, (n, channels, size, size), generator=g, dtype=torch.uint8)
    h = size // 2
    for i, y in enumerate(labels.tolist()):
        r, c = divmod(y % 4, 2)
        images[i, :, r * h + 1 : r * h + h - 1, c * h + 1 : c * h + h - 1] = 230
    return images, labels


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny batches train fastest on one thread, and a busy 2-core machine makes 2 threads crawl."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_data():
    (xtr, ytr), (xte, yte) = blob_dataset(256, 0), blob_dataset(128, 1)
    return xtr, ytr, xte, yte


FIT = dict(seed=0, device="cpu", epochs=2, batch_size=32)


@pytest.fixture(scope="module")
def fitted(tiny_data):
    return fit_domain_classifier(*tiny_data, **FIT)


# ------------------------------------------------------------------------------ architecture


def test_parameter_count_and_shapes():
    net = DomainClassifier(1, 28, 10)
    assert 60_000 <= sum(p.numel() for p in net.parameters()) <= 160_000
    for c, s in ((1, 28), (3, 32), (3, 64), (1, 16)):
        net = DomainClassifier(c, s, 10)
        x = torch.rand(3, c, s, s) * 2 - 1
        assert net(x).shape == (3, 10)
        f = net.features(x)
        assert f.shape == (3, net.feature_dim) and (f >= 0).all()  # post-ReLU features


def test_shape_errors():
    with pytest.raises(UserError, match="at least 16"):
        DomainClassifier(1, 8, 10)
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        DomainClassifier(1, 28, 10)(torch.zeros(2, 3, 28, 28))


# ------------------------------------------------------------------------------ training


def test_fit_reaches_high_accuracy_on_separable_data(fitted):
    model, acc = fitted
    assert acc >= 0.95
    assert not model.training


def test_fit_is_deterministic_and_leaves_the_global_rng_alone(tiny_data, fitted):
    state = torch.get_rng_state()
    again, acc = fit_domain_classifier(*tiny_data, **FIT)
    assert torch.equal(state, torch.get_rng_state())
    ref = fitted[0].state_dict()
    assert all(torch.equal(ref[k], v) for k, v in again.state_dict().items())
    assert acc == fitted[1]
    other, _ = fit_domain_classifier(*tiny_data, **{**FIT, "seed": 1})
    assert not torch.equal(ref["head.weight"], other.state_dict()["head.weight"])


def test_fit_reports_progress(tiny_data):
    calls = []
    fit_domain_classifier(*tiny_data, **{**FIT, "epochs": 1}, progress=lambda f, info: calls.append((f, info)))
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and 0 < fractions[0] < 1
    assert "loss" in calls[0][1] and "test_accuracy" in calls[-1][1]


def test_fit_rejects_non_uint8_images(tiny_data):
    xtr, ytr, xte, yte = tiny_data
    with pytest.raises(ValueError, match="uint8"):
        fit_domain_classifier(xtr.float(), ytr, xte, yte, **FIT)


# ------------------------------------------------------------------------------ extraction


def test_extract_dtypes_probabilities_and_batching(fitted, tiny_data):
    model = fitted[0]
    images = tiny_data[2][:37]
    feats, probs = extract(model, images, batch_size=500)
    assert feats.dtype == np.float64 and feats.shape == (37, model.feature_dim)
    assert probs.dtype == np.float64 and probs.shape == (37, 4)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-12)
    feats_b, probs_b = extract(model, images, batch_size=8)  # batch size must not matter
    np.testing.assert_allclose(feats_b, feats, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probs_b, probs, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(extract_features(model, images), feats)


def test_extract_float_input_matches_uint8_after_quantization(fitted, tiny_data):
    model = fitted[0]
    u8 = tiny_data[2][:20]
    x = u8.float() / 127.5 - 1 + (torch.rand(u8.shape) - 0.5) * 0.9 / 127.5  # < half a level of noise
    np.testing.assert_array_equal(extract(model, x)[0], extract(model, u8)[0])
    assert torch.equal(to_signed_unit_range(u8), u8.float() / 127.5 - 1)
    assert to_signed_unit_range(torch.tensor([[[[-3.0, 3.0]]]])).tolist() == [[[[-1.0, 1.0]]]]  # clamped


def test_extract_restores_train_mode_and_tf32_flags(fitted, tiny_data):
    model = fitted[0]
    model.train()
    extract(model, tiny_data[2][:4])
    assert model.training
    model.eval()
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    with no_tf32():
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


# ------------------------------------------------------------------------------ cache


def test_data_fingerprint():
    x, y = blob_dataset(20, 3, size=28, classes=10)
    fp = data_fingerprint(x, y)
    assert len(fp) == 64 and fp == data_fingerprint(x.clone(), y.clone())
    x2 = x.clone()
    x2[5, 0, 3, 3] ^= 1
    assert data_fingerprint(x2, y) != fp
    assert data_fingerprint(x.reshape(20, 1, 14, 56), y) != fp  # same bytes, other shape
    y2 = y.clone()
    y2[0] = (y2[0] + 1) % 10
    assert data_fingerprint(x, y2) != fp


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("GANRUN_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "a"
    monkeypatch.delenv("GANRUN_CACHE")
    assert default_cache_dir() == tmp_path / "xdg" / "ganrun"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "ganrun"


def _only_plain_state(obj) -> bool:
    if isinstance(obj, dict):
        return all(isinstance(k, str) and _only_plain_state(v) for k, v in obj.items())
    return isinstance(obj, (torch.Tensor, str, int, float, bool))


def test_cache_round_trip(tiny_data, tmp_path, monkeypatch):
    calls = []
    real_fit = cache_mod.fit_domain_classifier

    def counting_fit(*args, **kwargs):
        calls.append(1)
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(cache_mod, "fit_domain_classifier", counting_fit)
    model, info = load_or_fit_classifier(*tiny_data, **FIT, cache_dir=tmp_path)
    assert calls == [1] and info["cached"] is False and info["test_accuracy"] >= 0.95
    path = tmp_path / f"domain-{info['fingerprint'][:16]}.pt"
    assert info["path"] == str(path) and info["feature_network_id"] == f"domain-{info['fingerprint'][:16]}"
    assert sorted(os.listdir(tmp_path)) == [path.name]  # no temp files left behind
    mtime = path.stat().st_mtime_ns

    ckpt = torch.load(path, weights_only=True)
    assert _only_plain_state(ckpt)
    assert ckpt["fingerprint"] == info["fingerprint"] and ckpt["seed"] == 0 and ckpt["format_version"] >= 1
    assert ckpt["arch"] == model.arch()

    again, info2 = load_or_fit_classifier(*tiny_data, **FIT, cache_dir=tmp_path)
    assert calls == [1] and info2["cached"] is True and path.stat().st_mtime_ns == mtime
    assert info2["feature_network_id"] == info["feature_network_id"]
    assert info2["test_accuracy"] == info["test_accuracy"]
    images = tiny_data[2][:10]
    np.testing.assert_array_equal(extract(again, images)[0], extract(model, images)[0])

    # another recipe is another network, with another name
    _, info3 = load_or_fit_classifier(*tiny_data, **{**FIT, "epochs": 1}, cache_dir=tmp_path)
    assert calls == [1, 1] and info3["feature_network_id"] != info["feature_network_id"]


def test_corrupt_cache_is_replaced(tiny_data, tmp_path):
    _, info = load_or_fit_classifier(*tiny_data, **FIT, cache_dir=tmp_path)
    path = tmp_path / f"{info['feature_network_id']}.pt"
    path.write_bytes(path.read_bytes()[:100])  # truncated, as after a crash without atomic writes
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, info2 = load_or_fit_classifier(*tiny_data, **FIT, cache_dir=tmp_path)
    assert info2["cached"] is False and any("retraining" in str(w.message) for w in caught)
    assert torch.load(path, weights_only=True)["fingerprint"] == info["fingerprint"]
    assert load_or_fit_classifier(*tiny_data, **FIT, cache_dir=tmp_path)[1]["cached"] is True


def test_first_writer_wins(tmp_path):
    from ganrun.atomic import atomic_write

    path = tmp_path / "x.pt"

    def save(v):
        return lambda f: torch.save({"v": torch.tensor(v)}, f)

    atomic_write(path, save(1), exclusive=True)
    with pytest.raises(FileExistsError):
        atomic_write(path, save(2), exclusive=True)
    assert torch.load(path, weights_only=True)["v"].item() == 1
    atomic_write(path, save(3))
    assert torch.load(path, weights_only=True)["v"].item() == 3
    assert sorted(os.listdir(tmp_path)) == ["x.pt"]


# ------------------------------------------------------------------------------ Inception


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    """A state dict in pytorch-fid's format, from a randomly initialised network (no download)."""
    from ganrun.evaluation.inception import FIDInceptionV3

    torch.manual_seed(0)
    net = FIDInceptionV3()
    for m in net.modules():  # scale-preserving init, so the features are not ~0
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    path = tmp_path_factory.mktemp("inception") / "pt_inception-test.pth"
    torch.save(net.state_dict(), path)
    return path


def test_inception_features_match_pytorch_fid(inception_weights, monkeypatch):
    import pytorch_fid.inception as pytorch_fid_inception

    from ganrun.evaluation.inception import load_fid_inception

    model = load_fid_inception(inception_weights)
    images = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ours = extract_features(model, images.float() / 127.5 - 1)
    assert ours.shape == (2, 2048) and ours.dtype == np.float64 and ours.std() > 1e-2

    state = torch.load(inception_weights, weights_only=True)
    monkeypatch.setattr(pytorch_fid_inception, "load_state_dict_from_url", lambda *a, **k: state)
    ref_model = pytorch_fid_inception.InceptionV3([3]).eval()
    with torch.no_grad():  # pytorch-fid's input: ToTensor() of the RGB PNG, i.e. u8/255 in 3 channels
        ref = ref_model((images.float() / 255).expand(-1, 3, -1, -1))[0].flatten(1).double().numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)


def test_inception_weights_errors(tmp_path):
    from ganrun.evaluation.inception import load_fid_inception

    for path in (None, tmp_path / "missing.pth"):
        with pytest.raises(UserError, match=r"pt_inception-2015-12-05-6726825d\.pth.*eval\.inception_weights"):
            load_fid_inception(path)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="could not be read"):
        load_fid_inception(garbage)
    wrong = tmp_path / "wrong.pth"
    torch.save(DomainClassifier(1, 28, 10).state_dict(), wrong)
    with pytest.raises(UserError, match="do not match"):
        load_fid_inception(wrong)
