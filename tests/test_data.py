"""Tests of common/data.py against files written in the real on-disk formats."""
from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from common.config import ConfigError
from common.data import CIFAR10_MEAN, CIFAR10_STD, DATASETS, Batches, DataError, ImageSet, load_dataset, split_indices
from common.install import InstallError, matching_torchvision
from tests.conftest import REPO
from tests.fixtures.datasets import write_cifar10, write_cifar100, write_imagefolder, write_imagenet16, write_svhn


def _check(ds: ImageSet, images: np.ndarray, labels: np.ndarray, num_classes: int, side: int):
    assert ds.images.dtype == torch.uint8 and ds.labels.dtype == torch.int64
    assert ds.images.shape == (len(labels), side, side, 3)
    assert ds.num_classes == num_classes
    assert torch.equal(ds.images, torch.from_numpy(images))
    assert torch.equal(ds.labels, torch.from_numpy(labels.astype(np.int64)))


# --------------------------------------------------------------------------- readers


def test_cifar10_reader(tmp_path):
    written = write_cifar10(tmp_path, n_train=23, n_test=7)
    for train, split in ((True, "train"), (False, "test")):
        ds = load_dataset("cifar10", tmp_path, train=train)
        _check(ds, *written[split], num_classes=10, side=32)
        assert ds.mean == CIFAR10_MEAN and ds.std == CIFAR10_STD and ds.padding == 4


def test_cifar100_reader(tmp_path):
    written = write_cifar100(tmp_path, n_train=20, n_test=9)
    for train, split in ((True, "train"), (False, "test")):
        ds = load_dataset("cifar100", tmp_path, train=train)
        _check(ds, *written[split], num_classes=100, side=32)
        assert ds.mean == (0.5071, 0.4865, 0.4409) and ds.padding == 4


def test_svhn_reader_maps_10_to_0(tmp_path):
    written = write_svhn(tmp_path, n_train=30, n_test=12)
    for train, split in ((True, "train"), (False, "test")):
        images, labels = written[split]
        assert (labels == 10).any()
        ds = load_dataset("svhn", tmp_path, train=train)
        _check(ds, images, np.where(labels == 10, 0, labels), num_classes=10, side=32)
        assert ds.std == (0.1980, 0.2010, 0.1970)


def test_imagenet16_reader_keeps_labels_up_to_120(tmp_path):
    written = write_imagenet16(tmp_path, n_train=40, n_test=18)
    for train, split in ((True, "train"), (False, "test")):
        images, labels = written[split]
        keep = labels <= 120
        assert not keep.all() and (labels == 120).any()
        ds = load_dataset("imagenet16-120", tmp_path, train=train)
        _check(ds, images[keep], labels[keep] - 1, num_classes=120, side=16)
        assert ds.padding == 2
        assert ds.mean == pytest.approx((122.68 / 255, 116.66 / 255, 104.01 / 255))


def _known_image(side: int) -> np.ndarray:
    """HWC image whose every (y, x, c) value is different from its transposes'."""
    y, x, c = np.meshgrid(np.arange(side), np.arange(side), np.arange(3), indexing="ij")
    return (y * 5 + x * 2 + c * 80 + 1).astype(np.uint8)[None]


@pytest.mark.parametrize("name, folder, file, side, label", [("cifar10", "cifar-10-batches-py", "test_batch", 32, 3),
                                                          ("imagenet16-120", "imagenet16", "val_data", 16, 7)])
def test_pixel_layout_cifar_and_imagenet16(tmp_path, name, folder, file, side, label):
    # CIFAR's documented layout (ImageNet16's too): the red values, then green, then blue, each row-major.
    img = _known_image(side)
    row = np.concatenate([img[0, :, :, c].reshape(-1) for c in range(3)])[None]
    (tmp_path / folder).mkdir()
    with open(tmp_path / folder / file, "wb") as f:
        pickle.dump({"data": row, "labels": [label]}, f)
    ds = load_dataset(name, tmp_path, train=False)
    assert np.array_equal(ds.images.numpy(), img) and ds.labels.tolist() == [label - (name == "imagenet16-120")]


def test_pixel_layout_svhn(tmp_path):
    img = _known_image(32)
    (tmp_path / "svhn").mkdir()
    X = np.zeros((32, 32, 3, 1), np.uint8)
    X[:, :, :, 0] = img[0]  # SVHN: X[row, col, channel, index]
    scipy.io.savemat(tmp_path / "svhn" / "test_32x32.mat", {"X": X, "y": np.array([[4]])})
    ds = load_dataset("svhn", tmp_path, train=False)
    assert np.array_equal(ds.images.numpy(), img) and ds.labels.tolist() == [4]


def test_imagefolder_resizes_and_uses_train_statistics(tmp_path):
    written = write_imagefolder(tmp_path, classes=("dog", "cat"), n_per_class=3,
                                n_test_per_class=2, size=(40, 36))
    Image.fromarray(np.full((30, 20), 77, np.uint8)).save(tmp_path / "test" / "dog" / "gray.png")
    train = load_dataset("imagefolder", tmp_path, train=True, image_size=24)
    test = load_dataset("imagefolder", tmp_path, train=False, image_size=24)

    images, labels = written["train"]  # cat (label 0) first: classes are sorted by name
    expected = np.stack([np.asarray(Image.fromarray(im).resize((24, 24), Image.BILINEAR))
                         for im in images])
    assert torch.equal(train.images, torch.from_numpy(expected))
    assert train.labels.tolist() == labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert train.num_classes == test.num_classes == 2 and train.padding == 3

    pixels = expected.reshape(-1, 3) / 255.0
    assert train.mean == pytest.approx(tuple(pixels.mean(0)), abs=1e-12)
    assert train.std == pytest.approx(tuple(pixels.std(0)), abs=1e-12)
    assert test.mean == train.mean and test.std == train.std

    assert test.images.shape == (5, 24, 24, 3)  # 4 written + the grayscale one, as RGB
    assert test.labels.tolist() == [0, 0, 1, 1, 1]
    gray = test.images[4]  # 'gray.png' sorts after '00N.png' in dog/
    assert (gray == 77).all()


# --------------------------------------------------------------------------- errors


def test_unknown_dataset_lists_choices(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("mnist", tmp_path, train=True)
    assert all(name in str(err.value) for name in DATASETS)


@pytest.mark.parametrize("name,expected", [
    ("cifar10", "cifar-10-batches-py"),
    ("cifar100", "cifar-100-python"),
    ("svhn", "train_32x32.mat"),
    ("imagenet16-120", "train_data_batch_1"),
    ("imagefolder", "train"),
])
def test_missing_files_offline(tmp_path, name, expected):
    with pytest.raises(DataError) as err:
        load_dataset(name, tmp_path, train=True, download=True)
    message = str(err.value)
    assert str(tmp_path) in message and expected in message
    if name in ("cifar10", "cifar100", "svhn"):
        assert "DARTS_PT_OFFLINE" in message and "--data" in message


@pytest.mark.parametrize("name", ["cifar10", "svhn"])
def test_a_failed_download_leaves_no_folder_behind(tmp_path, monkeypatch, name):
    """A mistyped --data: the download (torchvision makes its folder first) fails, and the
    folders it made go again; a folder that was there stays."""
    import torchvision.datasets

    def unreachable(root, *args, **kwargs):
        Path(root).mkdir(parents=True, exist_ok=True)
        raise OSError("Name or service not known")

    monkeypatch.delenv("DARTS_PT_OFFLINE")
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", unreachable)
    monkeypatch.setattr(torchvision.datasets, "SVHN", unreachable)
    with pytest.raises(DataError, match="automatic download failed: Name or service not known"):
        load_dataset(name, tmp_path / "mistyped" / "data", train=True)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "data").mkdir()
    with pytest.raises(DataError):
        load_dataset(name, tmp_path / "data", train=True)
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


def test_a_torchvision_of_another_torch_is_named_with_its_fix(tmp_path, monkeypatch):
    """torchvision built for another torch fails on import; that is what the error says, with
    the pip command that installs a matching pair, not a failed download."""
    import common.install

    def broken(name):
        raise RuntimeError("operator torchvision::nms does not exist")

    monkeypatch.delenv("DARTS_PT_OFFLINE")
    monkeypatch.setattr(common.install, "import_module", broken)
    monkeypatch.setattr(common.install.torch, "__version__", "2.14.1+cu130")
    with pytest.raises(InstallError) as err:
        load_dataset("cifar10", tmp_path, train=True)
    message = str(err.value)
    assert message.startswith("torchvision ") and "does not work with the installed torch 2.14.1+cu130 " \
        "(operator torchvision::nms does not exist)" in message
    assert message.endswith('pip install "torch==2.14.1" "torchvision==0.29.*"') and "download" not in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # two interpreters importing torch
@pytest.mark.parametrize("module", ["nasbench201.train_search", "sota.train_imagenet"])
def test_a_broken_torchvision_is_one_line_from_every_entry_point(tmp_path, module):
    """Through the real entry points (CIFAR's download, ImageNet's image folders): a torchvision
    that fails on import ends the run with one error line naming the fix, and creates nothing."""
    import subprocess
    import sys

    fake = tmp_path / "site" / "torchvision"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise RuntimeError("operator torchvision::nms does not exist")\n')
    env = {**os.environ, "PYTHONPATH": f"{fake.parent}{os.pathsep}{REPO}", "DARTS_PT_OFFLINE": "0"}
    proc = subprocess.run([sys.executable, "-m", module, "--data", str(tmp_path / "data"), "--exp_root",
                           str(tmp_path / "exp"), "--gpu", "cpu"], env=env, capture_output=True, text=True,
                          timeout=120)
    out = proc.stdout + proc.stderr
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and "Traceback" not in out and len(errors) == 1, out[-2000:]
    assert "(operator torchvision::nms does not exist): install a torchvision built for this torch" in errors[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]


@pytest.mark.parametrize("torch_version, pair", [("2.14.1", "0.29.*"), ("2.5.0", "0.20.*"), ("2.1", "0.16.*"),
                                                 ("1.13.1", None)])
def test_each_torch_has_its_torchvision(torch_version, pair):
    assert matching_torchvision(torch_version) == pair


def test_requirements_pin_a_matching_pair():
    """requirements.txt and pyproject.toml keep torch and torchvision at a pair built together."""
    for file in ("requirements.txt", "pyproject.toml"):
        pins = dict(re.findall(r'^\s*"?(torch|torchvision)~=([\d.]+)"?,?\s*(?:#.*)?$', (REPO / file).read_text(),
                               flags=re.M))
        assert set(pins) == {"torch", "torchvision"}, file
        assert matching_torchvision(pins["torch"]) == pins["torchvision"].rsplit(".", 1)[0] + ".*", file


@pytest.mark.parametrize("writer, name", [(write_cifar10, "cifar10"), (write_cifar100, "cifar100")])
def test_pickles_with_bytes_keys_read_as_torchvision_reads_them(tmp_path, writer, name):
    """A batch pickled by Python 3 from the official files keeps their bytes keys (b'data',
    b'labels' / b'fine_labels')."""
    written = writer(tmp_path, n_train=10, n_test=5)
    for path in tmp_path.glob("*/*"):
        with open(path, "rb") as f:
            batch = pickle.load(f)
        with open(path, "wb") as f:
            pickle.dump({k.encode(): v for k, v in batch.items()}, f)
    _check(load_dataset(name, tmp_path, train=True), *written["train"], num_classes=int(name[5:]), side=32)


def test_corrupt_pickle_names_file(tmp_path):
    write_cifar10(tmp_path, n_train=10, n_test=5)
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    bad.write_bytes(b"\x80\x02}q\x00garbage")
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset("cifar10", tmp_path, train=True)


def test_corrupt_mat_names_file(tmp_path):
    (tmp_path / "svhn").mkdir()
    (tmp_path / "svhn" / "test_32x32.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(DataError, match="test_32x32.mat"):
        load_dataset("svhn", tmp_path, train=False)


def test_imagefolder_class_mismatch(tmp_path):
    write_imagefolder(tmp_path, classes=("a", "b"), n_per_class=1, n_test_per_class=1)
    (tmp_path / "test" / "b").rename(tmp_path / "test" / "c")
    load_dataset("imagefolder", tmp_path, train=True)  # train alone is fine
    with pytest.raises(DataError, match="do not match"):
        load_dataset("imagefolder", tmp_path, train=False)


# --------------------------------------------------------------------------- batches


def _id_set(n: int, side: int = 8, padding: int = 2) -> ImageSet:
    """Labels are the image ids, so batches reveal which images they hold."""
    rng = np.random.default_rng(1)
    images = torch.from_numpy(rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8))
    return ImageSet(images, torch.arange(n), n, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), padding)


def test_split_indices():
    a, b = split_indices(11, 0.5)
    assert a.tolist() == list(range(5)) and b.tolist() == list(range(5, 11))


def test_same_key_same_batches_different_key_different_order():
    batches = Batches(_id_set(50), None, 8, augment=True, seed=3, cutout_length=4)
    first = list(batches(7, cutout_prob=0.5))
    again = list(Batches(_id_set(50), None, 8, augment=True, seed=3, cutout_length=4)(7, 0.5))
    for (x1, y1), (x2, y2) in zip(first, again, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    other = torch.cat([y for _, y in batches((7, 1), cutout_prob=0.5)])
    assert not torch.equal(torch.cat([y for _, y in first]), other)
    other_seed = Batches(_id_set(50), None, 8, augment=True, seed=4)
    assert not torch.equal(torch.cat([y for _, y in other_seed(7)]), torch.cat([y for _, y in first]))


def test_each_index_once_per_pass_and_partial_batch():
    indices = torch.tensor([3, 9, 10, 17, 20, 21, 22, 40, 41, 49, 2])
    batches = Batches(_id_set(50), indices, 4, augment=False)
    out = list(batches(0))
    assert len(batches) == len(out) == 3 and [len(y) for _, y in out] == [4, 4, 3]
    seen = torch.cat([y for _, y in out])
    assert sorted(seen.tolist()) == sorted(indices.tolist())
    assert all(x.dtype == torch.float32 and x.shape[1:] == (3, 8, 8) for x, _ in out)
    assert all(y.dtype == torch.int64 for _, y in out)


def test_no_shuffle_keeps_order_and_plain_transform():
    data = _id_set(10)
    x, y = next(iter(Batches(data, None, 10, augment=False, shuffle=False)(5)))
    assert y.tolist() == list(range(10))
    expected = torch.stack([TF.normalize(TF.to_tensor(Image.fromarray(im.numpy())),
                                         data.mean, data.std) for im in data.images])
    assert torch.equal(x, expected)


def test_a_last_batch_smaller_than_the_processes_is_refused():
    """50 images in batches of 16 leave a last batch of 2: enough for 2 processes, not for 3."""
    Batches(_id_set(50), None, 16, augment=False, shard=(0, 2)).check_shards("batch_size")
    with pytest.raises(ConfigError, match="last batch of a pass over 50 images holds 2, fewer than the --nproc 3"):
        Batches(_id_set(50), None, 16, augment=False, shard=(1, 3)).check_shards("batch_size")
    Batches(_id_set(50), None, 16, augment=False, shard=(1, 3), limit=2).check_shards("batch_size")  # 2 full


def test_drop_last_and_limit():
    data = _id_set(10)
    dropped = Batches(data, None, 4, augment=False, drop_last=True)
    assert len(dropped) == 2 and [len(y) for _, y in dropped(0)] == [4, 4]
    limited = Batches(data, None, 3, augment=True, limit=2)
    assert len(limited) == 2 and len(list(limited(0))) == 2
    assert len(Batches(data, None, 3, augment=True, limit=10)) == 4


def _torchvision_candidates(image: np.ndarray, data: ImageSet) -> list[torch.Tensor]:
    """Every outcome of pad+RandomCrop+RandomHorizontalFlip+ToTensor+Normalize."""
    pil = Image.fromarray(image)
    h, w, _ = image.shape
    padded = TF.pad(pil, data.padding, fill=0)
    out = []
    for top in range(2 * data.padding + 1):
        for left in range(2 * data.padding + 1):
            crop = TF.crop(padded, top, left, h, w)
            for flipped in (crop, TF.hflip(crop)):
                out.append(TF.normalize(TF.to_tensor(flipped), data.mean, data.std))
    return out


def test_augmentation_matches_torchvision():
    data = _id_set(200, padding=1)
    x, y = next(iter(Batches(data, None, 200, augment=True, shuffle=False, seed=5)(2)))
    outcomes = set()
    for i in range(200):
        candidates = _torchvision_candidates(data.images[y[i]].numpy(), data)
        hits = [k for k, c in enumerate(candidates) if torch.equal(c, x[i])]
        assert hits, f"image {i} is no torchvision crop/flip of its source"
        outcomes.add(hits[0])
    assert outcomes == set(range(18))  # every offset in [0, 2 * padding]^2, flipped or not


def test_every_byte_value_normalises_as_torchvision_does():
    """The lookup table of ToTensor + Normalize is bit-exact for all 256 values per channel
    (and, being a lookup, gives the same bits on CUDA, where x / 255 is rounded differently)."""
    values = torch.arange(256, dtype=torch.uint8)
    image = torch.stack([values, values.flip(0), values.roll(100)], dim=-1).view(1, 16, 16, 3)
    data = ImageSet(image, torch.zeros(1, dtype=torch.int64), 10, CIFAR10_MEAN, CIFAR10_STD, padding=4)
    x, _ = next(iter(Batches(data, None, 1, augment=False)(0)))
    expected = TF.normalize(TF.to_tensor(Image.fromarray(image[0].numpy())), CIFAR10_MEAN, CIFAR10_STD)
    assert torch.equal(x[0], expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batches_equal_cpu_batches():
    """Same seed and key: the same images, crops, flips, cutouts and values, bit for bit."""
    data = _id_set(50, side=16, padding=4)
    make = lambda device: Batches(data, torch.arange(3, 45), 16, augment=True, device=device,  # noqa: E731
                                  seed=3, cutout_length=8, memory_format=torch.channels_last)
    for (x, y), (xc, yc) in zip(make("cpu")((1, 2), 0.5), make("cuda")((1, 2), 0.5), strict=True):
        assert xc.is_cuda and torch.equal(y, yc.cpu()) and torch.equal(x, xc.cpu())


def test_augmentation_on_cifar_fixture(tmp_path):
    write_cifar10(tmp_path, n_train=10, n_test=2)
    data = load_dataset("cifar10", tmp_path, train=True)
    x, y = next(iter(Batches(data, None, 6, augment=True, seed=1)(0)))
    for i in range(6):
        source = data.images[(data.labels == y[i]).nonzero()[:, 0]]  # same-class images
        assert any(torch.equal(c, x[i]) for im in source for c in _torchvision_candidates(im.numpy(), data))


def test_cutout():
    data = _id_set(32, side=16, padding=2)
    plain = next(iter(Batches(data, None, 32, augment=True, seed=9)(4)))[0]
    make = lambda: Batches(data, None, 32, augment=True, seed=9, cutout_length=6)  # noqa: E731
    assert torch.equal(next(iter(make()(4, cutout_prob=0.0)))[0], plain)
    cut = next(iter(make()(4, cutout_prob=1.0)))[0]
    full_squares = 0
    for i in range(32):
        hole = (cut[i] == 0).all(0) & (plain[i] != 0).any(0)
        rows, cols = hole.any(1).nonzero()[:, 0], hole.any(0).nonzero()[:, 0]
        assert len(rows) and len(cols), "prob 1 must cut every image"
        r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        assert hole[r0:r1, c0:c1].all() and hole.sum() == (r1 - r0) * (c1 - c0)
        assert r1 - r0 <= 6 and c1 - c0 <= 6
        full_squares += bool(r1 - r0 == 6 and c1 - c0 == 6)
        outside = ~hole
        assert torch.equal(cut[i][:, outside], plain[i][:, outside])
    assert full_squares > 0


def test_sample_draws_a_fresh_random_batch_per_key():
    """Batches.sample is the original's next(iter(queue)): batch_size distinct images of the
    selected indices, the same for the same key, independent across keys (so images repeat
    across steps), augmented like a pass."""
    indices = torch.arange(10, 40)
    batches = Batches(_id_set(50), indices, 8, augment=True, seed=3, cutout_length=4)
    x, y = batches.sample((0, 0, 0), cutout_prob=0.5)
    x2, y2 = batches.sample((0, 0, 0), cutout_prob=0.5)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert len(y) == 8 and len(set(y.tolist())) == 8 and set(y.tolist()) <= set(indices.tolist())
    draws = [batches.sample((0, 0, step))[1].tolist() for step in range(8)]
    assert len({tuple(d) for d in draws}) == 8
    counts = torch.bincount(torch.tensor(draws).flatten(), minlength=50)
    assert counts.max() > 1 and (counts[indices] == 0).any()  # with replacement across steps
    assert len(Batches(_id_set(5), None, 8, augment=False).sample(1)[1]) == 5  # smaller than a batch
    with pytest.raises(ValueError, match="cutout_prob"):
        batches.sample(0, cutout_prob=1.5)
