import gzip
import struct

import numpy as np
import pytest
import torch

from ppl_vae.config import DataConfig
from ppl_vae.data import load_data
from ppl_vae.data.base import ArrayDataset
from ppl_vae.registry import ConfigError


def test_digits_splits_and_preprocessing():
    s = load_data(DataConfig(name="digits", preprocess="binarize", val_fraction=0.1))
    assert len(s.train) + len(s.val) + len(s.test) == 1797
    assert s.train.binarize and not s.test.binarize
    assert set(s.test.x.unique().tolist()) <= {0.0, 1.0}
    a = next(s.train.batches(64, generator=torch.Generator().manual_seed(0)))[0]
    b = next(s.train.batches(64, generator=torch.Generator().manual_seed(1)))[0]
    assert set(a.unique().tolist()) <= {0.0, 1.0} and not torch.equal(a, b)  # fresh draws
    levels = load_data(DataConfig(name="digits", preprocess="levels", flatten=False))
    assert levels.train.shape == (1, 8, 8) and levels.train.x.max() == 16
    scaled = load_data(DataConfig(name="digits", preprocess="scale"))
    assert scaled.train.x.max() == 1.0 and scaled.meta["bin_width"] == pytest.approx(1 / 16)
    limited = load_data(DataConfig(name="digits", limit=100))
    assert len(limited.train) == 100


def write_idx(path, array):
    header = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_idx_directory_loader(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 50), ("t10k", 20)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    s = load_data(DataConfig(name="mnist", path=str(tmp_path), preprocess="scale", val_fraction=0.2))
    assert s.train.x.shape == (40, 784) and s.test.x.shape == (20, 784) and s.test.y.shape == (20,)
    assert s.meta["image_shape"] == (1, 28, 28)


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path):
    with pytest.raises(ConfigError, match="apt-get install -y dataset-fashion-mnist"):
        load_data(DataConfig(name="fashion-mnist", path=str(tmp_path)))


def test_npz_and_npy_arrays(tmp_path):
    x = np.random.default_rng(0).random((30, 6)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(30) % 3)
    s = load_data(DataConfig(name="array", path=str(tmp_path / "d.npz"), preprocess="none"))
    assert s.train.shape == (6,) and s.train.y is not None
    x[0, 0] = np.nan
    np.save(tmp_path / "nan.npy", x)
    nan = load_data(DataConfig(name="array", path=str(tmp_path / "nan.npy"), preprocess="none"))
    from ppl_vae.components.likelihoods import NormalLikelihood

    with pytest.raises(ConfigError, match="NaN/inf"):
        for part in (nan.train, nan.val, nan.test):
            part.check_for(NormalLikelihood().setup((6,)))
    with pytest.raises(ConfigError, match="not found"):
        load_data(DataConfig(name="array", path=str(tmp_path / "missing.npy")))


def test_csv_with_mixed_columns_and_missing_values(tmp_path):
    rows = ["age,smoker,colour"] + [f"{20 + i},{i % 2},{['red', 'green', 'blue'][i % 3]}" for i in range(40)]
    rows[5] = "25,,green"  # a missing binary cell
    (tmp_path / "t.csv").write_text("\n".join(rows))
    s = load_data(DataConfig(name="csv", path=str(tmp_path / "t.csv"), preprocess="standardize", val_fraction=0))
    assert s.meta["columns"] == ["numeric", "binary", "categorical:3"]
    assert s.meta["categories"]["colour"] == ["blue", "green", "red"]
    everything = torch.cat([s.train.x, s.test.x])
    assert abs(float(s.train.x[:, 0].mean())) < 1e-5  # numeric column standardized on train
    masks = [m for m in (s.train.mask, s.test.mask) if m is not None]
    assert sum(int((~m).sum()) for m in masks) == 1
    assert everything[:, 2].max() == 2


def test_bad_csv_and_bad_preprocess(tmp_path):
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n3\n")
    with pytest.raises(ConfigError, match="row 3 has 1 cells but the header has 2"):
        load_data(DataConfig(name="csv", path=str(tmp_path / "bad.csv")))
    with pytest.raises(ConfigError, match="unknown data.preprocess 'binarise'"):
        load_data(DataConfig(preprocess="binarise"))


def test_array_dataset_checks_shapes():
    with pytest.raises(ConfigError, match="labels must be shaped"):
        ArrayDataset(torch.zeros(5, 3), y=torch.zeros(4))
    with pytest.raises(ConfigError, match=r"n_data, \*datum_shape"):
        ArrayDataset(torch.zeros(5))


def test_array_labels_are_checked_and_give_the_class_count(tmp_path):
    x = np.random.default_rng(0).random((30, 4)).astype(np.float32)
    np.savez(tmp_path / "ok.npz", x=x, y=np.arange(30) % 3)
    splits = load_data(DataConfig(name="array", path=str(tmp_path / "ok.npz"), preprocess="none", labels=6))
    assert splits.meta["n_classes"] == 3 and len(splits.labelled) == 6
    assert sorted(splits.labelled.y.tolist()) == [0, 0, 1, 1, 2, 2]
    np.savez(tmp_path / "neg.npz", x=x, y=np.arange(30) - 1)
    with pytest.raises(ConfigError, match="labels 'y' must be non-negative integers"):
        load_data(DataConfig(name="array", path=str(tmp_path / "neg.npz"), preprocess="none"))
    np.save(tmp_path / "nolabels.npy", x)
    with pytest.raises(ConfigError, match="data.labels needs labelled data"):
        load_data(DataConfig(name="array", path=str(tmp_path / "nolabels.npy"), preprocess="none", labels=6))
