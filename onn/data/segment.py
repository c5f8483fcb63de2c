"""Segmentation datasets: images (N, 3, S, S) in [0, 1] and masks (N, 1, S, S) in {0, 1}.

Each loader returns ``(train, val, test, 1)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from onn.data.common import DatasetError, package_file

NUCLEI_TILE = 32
# Row bands of the 512x512 nuclei image: disjoint, so the test region is never seen in training.
NUCLEI_ROWS = {"train": (0, 320), "val": (320, 384), "test": (384, 512)}


def nuclei_image() -> tuple[np.ndarray, np.ndarray]:
    """The real 512x512 fluorescence nuclei image (float in [0, 1]) and its boolean mask, from the
    ``stardist==0.9.2`` wheel (installed with ``--no-deps``; the package is never imported)."""
    import tifffile

    hint = "install it with: pip install --no-deps stardist==0.9.2"
    image = tifffile.imread(package_file("stardist", "data/images/img2d.tif", hint)).astype(np.float32)
    mask = tifffile.imread(package_file("stardist", "data/images/mask2d.tif", hint)) > 0
    return image / 255.0, mask


def nuclei(root: str | None):
    """32x32 tiles of the nuclei image. Train: 1024 random crops of rows 0-319 with flips and
    90-degree rotations (fixed seed); val: the 32 tiles of rows 320-383; test: the 64 tiles of rows
    384-511 (together exactly the held-out region). The grey image is shown to the colour camera
    as equal R, G and B."""
    del root
    image, mask = nuclei_image()
    rng = np.random.default_rng(0)
    size = NUCLEI_TILE

    def tiles(split: str, count: int | None):
        top, bottom = NUCLEI_ROWS[split]
        if count is None:  # non-overlapping tiles covering the band exactly
            corners = [(y, x) for y in range(top, bottom, size) for x in range(0, image.shape[1], size)]
        else:
            corners = list(zip(rng.integers(top, bottom - size + 1, count),
                               rng.integers(0, image.shape[1] - size + 1, count)))
        images, masks = [], []
        for y, x in corners:
            tile, tile_mask = image[y:y + size, x:x + size], mask[y:y + size, x:x + size]
            if count is not None:  # augmentation, fixed per tile
                k = int(rng.integers(4))
                tile, tile_mask = np.rot90(tile, k), np.rot90(tile_mask, k)
                if rng.random() < 0.5:
                    tile, tile_mask = tile[:, ::-1], tile_mask[:, ::-1]
            images.append(np.ascontiguousarray(tile))
            masks.append(np.ascontiguousarray(tile_mask))
        x = torch.from_numpy(np.stack(images)).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()  # (N, 3, S, S)
        y = torch.from_numpy(np.stack(masks)).float().unsqueeze(1)  # (N, 1, S, S)
        return TensorDataset(x, y)

    return tiles("train", 1024), tiles("val", None), tiles("test", None), 1


def fashion_masks(root: str | None):
    """Fashion-MNIST items as tinted foreground on real photo textures (32x32); mask = item pixels
    brighter than 0.15. 6000 train / 1000 val / 2000 test, fixed seed."""
    from onn.data.classify import _photos, fashion_mnist

    train, _, test, _ = fashion_mnist(root)
    items = torch.cat([train.tensors[0][:7000], test.tensors[0][:2000]])  # (9000, 1, 28, 28)
    rng = torch.Generator().manual_seed(0)
    photos = [torch.from_numpy(p).permute(2, 0, 1).float() for p in _photos(128)]  # (3, H, W) each
    n = len(items)
    backgrounds = torch.empty(n, 3, 32, 32)
    for i in range(n):
        photo = photos[int(torch.randint(len(photos), (1,), generator=rng))]
        y = int(torch.randint(photo.shape[1] - 32 + 1, (1,), generator=rng))
        x = int(torch.randint(photo.shape[2] - 32 + 1, (1,), generator=rng))
        backgrounds[i] = photo[:, y:y + 32, x:x + 32]
    items = torch.nn.functional.pad(items, (2, 2, 2, 2))  # (N, 1, 32, 32)
    masks = (items > 0.15).float()
    tint = 0.5 + 0.5 * torch.rand(n, 3, 1, 1, generator=rng)
    images = masks * items * tint + (1 - masks) * 0.6 * backgrounds
    splits = [(0, 6000), (6000, 7000), (7000, 9000)]
    return (*[TensorDataset(images[a:b], masks[a:b]) for a, b in splits], 1)


def carvana(root: str | None):
    """A Carvana-format folder: ``images/<id>.jpg`` and ``masks/<id>_mask.gif`` (or ``.png``),
    resized to 32x32. Split 80/10/10 by car (the part of ``<id>`` before the last ``_``), so views
    of one car never straddle splits."""
    from PIL import Image

    if root is None:
        raise DatasetError("carvana needs root=<folder> holding images/ and masks/ (Kaggle Carvana layout).")
    folder = Path(root)
    images_dir, masks_dir = folder / "images", folder / "masks"
    if not images_dir.is_dir() or not masks_dir.is_dir():
        raise DatasetError(f"carvana: {folder} must hold images/<id>.jpg and masks/<id>_mask.gif|png.")
    samples = []
    for image_path in sorted(images_dir.glob("*.jpg")):
        stem = image_path.stem
        mask_path = next((p for p in (masks_dir / f"{stem}_mask.gif", masks_dir / f"{stem}_mask.png") if p.exists()),
                         None)
        if mask_path is None:
            raise DatasetError(f"carvana: no mask for {image_path.name} in {masks_dir} (expected {stem}_mask.gif).")
        image = np.asarray(Image.open(image_path).convert("RGB").resize((32, 32), Image.BILINEAR), np.float32) / 255
        mask = np.asarray(Image.open(mask_path).convert("L").resize((32, 32), Image.NEAREST)) > 0
        samples.append((stem.rsplit("_", 1)[0], image, mask))
    if not samples:
        raise DatasetError(f"carvana: no images/*.jpg in {folder}.")
    cars = sorted({car for car, _, _ in samples})
    n_val = max(1, len(cars) // 10)
    n_test = max(1, len(cars) // 10)
    if len(cars) < 3:
        raise DatasetError(f"carvana: need images of at least 3 cars to split, found {len(cars)}.")
    split_of = {car: ("test" if i < n_test else "val" if i < n_test + n_val else "train") for i, car in enumerate(cars)}

    def gather(split: str):
        chosen = [(image, mask) for car, image, mask in samples if split_of[car] == split]
        x = torch.from_numpy(np.stack([image for image, _ in chosen])).permute(0, 3, 1, 2).contiguous()
        y = torch.from_numpy(np.stack([mask for _, mask in chosen])).float().unsqueeze(1)
        return TensorDataset(x, y)

    return gather("train"), gather("val"), gather("test"), 1
