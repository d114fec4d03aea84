"""DeviceLoader and batched augmentation: correctness, determinism, sharding (all on CPU)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import reslab.data.loader as loader_module
from reslab.data import AugmentConfig, DeviceLoader, load_dataset, normalize
from reslab.data.augment import augment_batch, draw_params
from reslab.data.loader import epoch_seed
from reslab.errors import ConfigError, DatasetError


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic", num_train=100, num_test=23, image_size=8, channels=3, seed=1)


def _batches(loader):
    xs, ys = zip(*list(loader))
    return torch.cat(xs), torch.cat(ys)


def _reference(images, perm, params, config, count, size=8):
    """Per-sample reference: pad, crop, flip, cutout with plain slicing."""
    p = config.crop_padding
    out = []
    for k in range(count):
        image = F.pad(images[perm[k]], (p, p, p, p))
        oy, ox = params.offsets[k].tolist()
        crop = image[:, oy:oy + size, ox:ox + size].clone()
        if config.flip and params.flips[k]:
            crop = crop.flip(2)
        if config.cutout:
            cy, cx = params.centres[k].tolist()
            top, left = cy - config.cutout // 2, cx - config.cutout // 2
            crop[:, max(top, 0):max(top + config.cutout, 0), max(left, 0):max(left + config.cutout, 0)] = 0
        out.append(crop)
    return torch.stack(out)


@pytest.mark.parametrize("flip_copy", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("config", [AugmentConfig(crop_padding=2, flip=True, cutout=3),
                                    AugmentConfig(crop_padding=0, flip=True),
                                    AugmentConfig(crop_padding=3, flip=False),
                                    AugmentConfig(crop_padding=0, flip=False, cutout=4)])
def test_augmentation_equals_per_sample_reference(data, monkeypatch, config, channels_last, flip_copy):
    monkeypatch.setattr(loader_module, "FLIP_COPY_MAX_BYTES", 1 << 30 if flip_copy else 0)
    loader = DeviceLoader(data.train_images, data.train_labels, batch_size=16, augment=config, seed=3,
                          channels_last=channels_last)
    loader.set_epoch(2)
    x, y = _batches(loader)
    generator = torch.Generator().manual_seed(epoch_seed(3, 2))
    perm = torch.randperm(100, generator=generator)
    params = draw_params(100, config, (8, 8), generator, "cpu")
    expected = _reference(data.train_images, perm, params, config, 96)
    assert x.shape == (96, 3, 8, 8) and len(loader) == 6
    assert torch.equal(y, data.train_labels[perm[:96]])
    assert torch.allclose(x, expected.float() / 255, atol=1e-6)
    if channels_last:
        assert x.is_contiguous(memory_format=torch.channels_last)


def test_crop_is_a_zero_filled_shift_within_bounds(data):
    p = 3
    loader = DeviceLoader(data.train_images, data.train_labels, batch_size=50,
                          augment=AugmentConfig(crop_padding=p, flip=False), seed=0, drop_last=False)
    x, y = _batches(loader)
    images = (x * 255).round().to(torch.uint8)
    seen = set()
    # Labels are not unique, so match each output against the image it came from via a fresh plan.
    index, _ = loader._plan()
    for out, source in zip(images, data.train_images[index]):
        padded = F.pad(source, (p, p, p, p))
        shifts = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
                  if torch.equal(padded[:, dy:dy + 8, dx:dx + 8], out)]
        assert shifts, "output is not a crop of its padded source"
        seen.update(shifts)
    assert len(seen) > 10  # offsets really vary


def test_flip_mirrors_about_half(data):
    loader = DeviceLoader(data.train_images, data.train_labels, batch_size=100,
                          augment=AugmentConfig(crop_padding=0, flip=True), seed=5)
    x, _ = _batches(loader)
    x = (x * 255).round().to(torch.uint8)
    index, _ = loader._plan()
    source = data.train_images[index]
    same = [(a == b).all().item() for a, b in zip(x, source)]
    mirrored = [(a == b.flip(2)).all().item() for a, b in zip(x, source)]
    assert all(s or m for s, m in zip(same, mirrored))
    assert 25 < sum(mirrored) < 75


def test_eval_mode_is_exactly_normalised_input_in_order(data):
    loader = DeviceLoader(data.test_images, data.test_labels, batch_size=10, train=False,
                          augment=AugmentConfig(crop_padding=4, cutout=4), mean=data.mean, std=data.std)
    assert len(loader) == 3
    batches = list(loader)
    assert [b[0].shape[0] for b in batches] == [10, 10, 3]  # last partial batch kept
    x, y = _batches(loader)
    assert torch.equal(x, normalize(data.test_images, data.mean, data.std))
    assert torch.equal(y, data.test_labels)
    expected = (data.test_images.double() / 255 - torch.tensor(data.mean).view(1, 3, 1, 1).double()) \
        / torch.tensor(data.std).view(1, 3, 1, 1).double()
    assert torch.allclose(x.double(), expected, atol=1e-5)


def test_same_seed_same_batches_other_epoch_or_seed_differs(data):
    def run(seed, epoch):
        loader = DeviceLoader(data.train_images, data.train_labels, batch_size=32, augment=AugmentConfig(cutout=2),
                              seed=seed)
        loader.set_epoch(epoch)
        return _batches(loader)

    a, b = run(0, 1), run(0, 1)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(run(0, 2)[0], a[0])
    assert not torch.equal(run(1, 1)[0], a[0])


def test_iterating_twice_repeats_the_epoch(data):
    loader = DeviceLoader(data.train_images, data.train_labels, batch_size=32, augment=AugmentConfig())
    assert torch.equal(_batches(loader)[0], _batches(loader)[0])


@pytest.mark.parametrize("world_size", [2, 3])
def test_shards_are_disjoint_equal_and_match_one_process(data, world_size):
    batch = 8
    config = AugmentConfig(crop_padding=2, flip=True, cutout=2)
    ranks = [DeviceLoader(data.train_images, data.train_labels, batch_size=batch, augment=config, seed=7,
                          rank=r, world_size=world_size) for r in range(world_size)]
    for loader in ranks:
        loader.set_epoch(4)
    plans = [loader._plan()[0] for loader in ranks]
    per_rank = 100 // world_size
    assert all(len(p) == per_rank for p in plans) and len({len(r) for r in ranks}) == 1
    union = torch.cat(plans)
    assert union.unique().numel() == per_rank * world_size  # disjoint
    single = DeviceLoader(data.train_images, data.train_labels, batch_size=batch * world_size, augment=config,
                          seed=7)
    single.set_epoch(4)
    assert torch.equal(union.sort().values, single._plan()[0][:per_rank * world_size].sort().values)
    # Step i of all ranks together is step i of one process with the global batch, augmentation included.
    for step, (whole, *parts) in enumerate(zip(single, *ranks)):
        gathered_x = torch.stack([p[0] for p in parts], dim=1).flatten(0, 1)  # interleave ranks
        gathered_y = torch.stack([p[1] for p in parts], dim=1).flatten(0, 1)
        assert torch.equal(gathered_x, whole[0]) and torch.equal(gathered_y, whole[1])
    assert step + 1 == len(ranks[0]) == len(single)


def test_eval_shards_cover_every_sample_once(data):
    ranks = [DeviceLoader(data.test_images, data.test_labels, batch_size=4, train=False, rank=r, world_size=2)
             for r in range(2)]
    seen = torch.cat([torch.cat([y for _, y in loader]) for loader in ranks])
    counts = [sum(x.shape[0] for x, _ in loader) for loader in ranks]
    assert counts == [12, 11]
    expected = torch.cat([data.test_labels[0::2], data.test_labels[1::2]])
    assert torch.equal(seen, expected)


def test_drop_last_false_keeps_partial_training_batch(data):
    loader = DeviceLoader(data.train_images, data.train_labels, batch_size=30, drop_last=False)
    assert len(loader) == 4 and [x.shape[0] for x, _ in loader] == [30, 30, 30, 10]
    assert len(DeviceLoader(data.train_images, data.train_labels, batch_size=30)) == 3


def test_augment_none_only_shuffles_and_normalises(data):
    loader = DeviceLoader(data.train_images, data.train_labels, batch_size=25, augment=None,
                          mean=data.mean, std=data.std)
    x, _ = _batches(loader)
    index, _ = loader._plan()
    assert torch.equal(x, normalize(data.train_images[index], data.mean, data.std))


def test_bad_arguments(data):
    with pytest.raises(ConfigError, match="lower the batch size"):
        DeviceLoader(data.train_images, data.train_labels, batch_size=101)
    with pytest.raises(ConfigError, match="batch_size=0"):
        DeviceLoader(data.train_images, data.train_labels, batch_size=0)
    with pytest.raises(ConfigError, match="rank=2"):
        DeviceLoader(data.train_images, data.train_labels, rank=2, world_size=2)
    with pytest.raises(DatasetError, match="100 images but 5 labels"):
        DeviceLoader(data.train_images, data.train_labels[:5])
    with pytest.raises(DatasetError, match="uint8"):
        DeviceLoader(data.train_images.float(), data.train_labels)
    with pytest.raises(ConfigError, match="3 channels"):
        DeviceLoader(data.train_images, data.train_labels, mean=(0.5,), std=(0.5,))
    with pytest.raises(ConfigError, match="crop_padding=-1"):
        AugmentConfig(crop_padding=-1)


def test_augment_batch_for_streamed_batches(data):
    batch = data.train_images[:20]
    generator = torch.Generator().manual_seed(0)
    out = augment_batch(batch, AugmentConfig(crop_padding=2, flip=True), generator)
    params = draw_params(20, AugmentConfig(crop_padding=2, flip=True), (8, 8),
                         torch.Generator().manual_seed(0), "cpu")
    expected = _reference(batch, torch.arange(20), params, AugmentConfig(crop_padding=2, flip=True), 20)
    assert torch.equal(out, expected)


def test_normalize_single_image_and_scaling_only(data):
    image = data.test_images[0]
    assert torch.allclose(normalize(image, None, None), image.float() / 255, atol=1e-7)
    assert normalize(image, data.mean, data.std).shape == (3, 8, 8)
    with pytest.raises(ConfigError, match="uint8"):
        normalize(image.float(), data.mean, data.std)
