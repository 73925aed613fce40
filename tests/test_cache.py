import os

import numpy as np
import pytest

from maskcls.data.cache import cached_images, load_resized
from maskcls.data.layout import read_dataset
from maskcls.errors import DataError
from tests.helpers import make_layout, write_image


@pytest.fixture
def colourful(tmp_path):
    root = make_layout(tmp_path / "data", ["000001_female_Asian_45", "000002_male_Asian_22"])
    rng = np.random.default_rng(0)
    for path in sorted((root / "train/images").rglob("*.jpg")):
        write_image(path, colour=tuple(int(v) for v in rng.integers(0, 255, 3)), size=(96, 128))
    return root


def test_cache_holds_each_image_resized_in_table_order(colourful, tmp_path):
    paths = list(read_dataset(colourful).train["path"])
    array = cached_images(colourful, paths, (24, 32), tmp_path / "cache", workers=1)
    assert array.shape == (14, 32, 24, 3) and array.dtype == np.uint8
    for k in (0, 5, 13):
        assert np.array_equal(array[k], load_resized(colourful / paths[k], (24, 32)))


def test_cache_is_reused_and_rebuilt_when_images_change(colourful, tmp_path):
    paths = list(read_dataset(colourful).train["path"])
    cache = tmp_path / "cache"
    cached_images(colourful, paths, (24, 32), cache, workers=2)
    (first,) = list(cache.iterdir())
    stamp = first.stat().st_mtime_ns
    again = cached_images(colourful, paths, (24, 32), cache, workers=2)
    assert first.stat().st_mtime_ns == stamp and isinstance(again, np.memmap)
    write_image(colourful / paths[0], colour=(0, 0, 0), size=(96, 128))
    os.utime(colourful / paths[0], ns=(1, 1))
    rebuilt = cached_images(colourful, paths, (24, 32), cache, workers=1)
    assert len(list(cache.glob("*.npy"))) == 2 and rebuilt[0].max() < 10
    cached_images(colourful, paths, (12, 16), cache, workers=1)
    assert len(list(cache.glob("*.npy"))) == 3
    assert not list(cache.glob("*.tmp"))


def test_unreadable_image_is_a_clear_error_and_leaves_no_cache(colourful, tmp_path):
    paths = list(read_dataset(colourful).train["path"])
    (colourful / paths[3]).write_bytes(b"broken")
    with pytest.raises(DataError, match=r"mask4.jpg: cannot decode image"):
        cached_images(colourful, paths, (24, 32), tmp_path / "cache", workers=1)
    assert not list((tmp_path / "cache").iterdir())


@pytest.mark.parametrize("damage", ["truncated", "garbage", "other shape"])
def test_a_damaged_cache_file_is_named_and_built_again(colourful, tmp_path, caplog, damage):
    paths = list(read_dataset(colourful).train["path"])
    cache = tmp_path / "cache"
    good = np.array(cached_images(colourful, paths, (24, 32), cache, workers=1))
    (target,) = list(cache.iterdir())
    if damage == "truncated":
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    elif damage == "garbage":
        target.write_bytes(b"not an array at all")
    else:
        np.save(target, np.zeros((3, 32, 24, 3), np.uint8))
    with caplog.at_level("WARNING", logger="maskcls"):
        rebuilt = cached_images(colourful, paths, (24, 32), cache, workers=1)
    assert np.array_equal(rebuilt, good)
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith(f"{target}: ")
    assert warnings[0].endswith("building it again")


def test_the_cache_says_its_size_and_refuses_a_disk_without_room_before_decoding(
    colourful, tmp_path, monkeypatch, caplog
):
    import logging
    import shutil
    from collections import namedtuple

    from maskcls.data import cache as caching
    from maskcls.errors import UserError

    paths = list(read_dataset(colourful).train["path"])
    decoded = []
    monkeypatch.setattr(caching, "decode_chunk", lambda task: decoded.append(task) or caching.decode_chunk(task))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: usage(10**9, 10**9, 2**20))  # 1 MiB free
    with pytest.raises(UserError) as refused:
        cached_images(colourful, paths, (384, 512), tmp_path / "cache", workers=1)
    assert str(refused.value) == (
        f"{tmp_path / 'cache'}: the image cache needs 0.01 GB (14 images at 384x512), 0.00 GB are free; free some "
        "space, put the cache on a bigger disk (train.cache_dir, --cache-dir), or set data.cache=false to decode "
        "the images every epoch instead"
    )
    assert decoded == [] and list((tmp_path / "cache").iterdir()) == []
    monkeypatch.undo()
    monkeypatch.setattr(caching, "CHUNK", 4)  # 4 chunks on 2 processes, written where each belongs
    with caplog.at_level(logging.INFO, logger="maskcls"):
        array = cached_images(colourful, paths, (24, 32), tmp_path / "cache", workers=2)
    assert "caching 14 images at 24x32 (0.00 GB)" in caplog.text
    for k in range(14):
        assert np.array_equal(array[k], load_resized(colourful / paths[k], (24, 32)))
