"""ImageNet-style data: an ImageFolder (`root/<class>/<image>`) and the standard transforms.

torchvision's `ImageFolder` and transforms are used when torchvision imports; otherwise (torchvision
wheels do not always match the installed torch) the small Pillow versions here do the same job:

    train: RandomResizedCrop(size, scale=(0.08, 1), ratio=(3/4, 4/3)) -> horizontal flip (p = 0.5)
    eval:  resize the short side to size / 0.875 -> center crop size x size

Both paths return uint8 (3, size, size) tensors; `normalize` turns a batch into float on the device
(less to copy to a GPU, one place that knows the mean and standard deviation).  Random choices use
torch's global RNG, which `sampling.SeededDataset` seeds per sample.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["IMAGE_EXTENSIONS", "ImageFolder", "RandomResizedCrop", "RandomHorizontalFlip", "Resize",
           "CenterCrop", "ToUint8Tensor", "Compose", "train_transform", "eval_transform", "image_folder",
           "normalize", "torchvision_available", "MEAN", "STD"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
MEAN = (0.485, 0.456, 0.406)          # ImageNet channel statistics (RGB, [0, 1] scale)
STD = (0.229, 0.224, 0.225)
EVAL_CROP_FRACTION = 0.875


def torchvision_available() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:                   # ImportError, or a torchvision built for another torch
        return False
    return True


def _pil():
    try:
        from PIL import Image
    except ImportError as e:            # pragma: no cover - Pillow ships with the demo extra
        raise ImportError("the built-in image pipeline needs Pillow: pip install -e '.[demo]'") from e
    return Image


class ImageFolder(Dataset):
    """`root/<class>/**/<image>`: classes are the sorted sub-folder names (or `classes`, to give a
    validation folder the training folder's numbering); samples are (path, class index) in sorted order."""

    def __init__(self, root: str | Path, transform=None, classes: list[str] | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist")
        found = sorted(e.name for e in os.scandir(self.root) if e.is_dir())
        self.classes = list(classes) if classes is not None else found
        if not self.classes:
            raise ValueError(f"{self.root} has no class sub-folders (expected {self.root}/<class>/<image>)")
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        unknown = sorted(set(found) - set(self.classes))
        if unknown:
            raise ValueError(f"{self.root} has classes the training set lacks: {unknown[:5]}")
        self.samples = [(str(p), self.class_to_idx[c]) for c in self.classes if (self.root / c).is_dir()
                        for p in sorted((self.root / c).rglob("*")) if p.suffix.lower() in IMAGE_EXTENSIONS]
        if not self.samples:
            raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {self.root}")
        self.targets = [t for _, t in self.samples]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, target = self.samples[index]
        with open(path, "rb") as f:
            img = _pil().open(f).convert("RGB")
        return (self.transform(img) if self.transform is not None else img), target


class RandomResizedCrop:
    """A crop of random area (fraction `scale` of the image) and aspect ratio (log-uniform in `ratio`),
    resized to size x size; after 10 failed draws, the largest centred crop within `ratio`."""

    def __init__(self, size: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
        self.size, self.scale, self.ratio = int(size), scale, ratio

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(left, top, w, h) of the crop for an image of width x height."""
        area = width * height
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * float(torch.empty(1).uniform_(*self.scale))
            aspect = math.exp(float(torch.empty(1).uniform_(*log_ratio)))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, (1,)))
                left = int(torch.randint(0, width - w + 1, (1,)))
                return left, top, w, h
        in_ratio = width / height
        if in_ratio < min(self.ratio):
            w, h = width, int(round(width / min(self.ratio)))
        elif in_ratio > max(self.ratio):
            w, h = int(round(height * max(self.ratio))), height
        else:
            w, h = width, height
        return (width - w) // 2, (height - h) // 2, w, h

    def __call__(self, img):
        left, top, w, h = self.box(*img.size)
        return img.resize((self.size, self.size), _pil().BILINEAR, box=(left, top, left + w, top + h))


class RandomHorizontalFlip:
    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, img):
        if float(torch.rand(1)) < self.p:
            return img.transpose(_pil().FLIP_LEFT_RIGHT)
        return img


class Resize:
    """Scale so the shorter side is `size` (aspect ratio kept)."""

    def __init__(self, size: int):
        self.size = int(size)

    def __call__(self, img):
        w, h = img.size
        if w <= h:
            nw, nh = self.size, int(self.size * h / w)
        else:
            nw, nh = int(self.size * w / h), self.size
        return img.resize((nw, nh), _pil().BILINEAR)


class CenterCrop:
    def __init__(self, size: int):
        self.size = int(size)

    def __call__(self, img):
        w, h = img.size
        left, top = int(round((w - self.size) / 2.0)), int(round((h - self.size) / 2.0))
        return img.crop((left, top, left + self.size, top + self.size))


class ToUint8Tensor:
    """PIL RGB image -> uint8 tensor (3, H, W)."""

    def __call__(self, img) -> torch.Tensor:
        return torch.from_numpy(np.array(img, dtype=np.uint8, copy=True)).permute(2, 0, 1).contiguous()


class Compose:
    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, img):
        for t in self.transforms:
            img = t(img)
        return img


def train_transform(size: int, use_torchvision: bool):
    if use_torchvision:
        from torchvision import transforms as T

        return T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.PILToTensor()])
    return Compose([RandomResizedCrop(size), RandomHorizontalFlip(), ToUint8Tensor()])


def eval_transform(size: int, use_torchvision: bool):
    resize = int(round(size / EVAL_CROP_FRACTION))
    if use_torchvision:
        from torchvision import transforms as T

        return T.Compose([T.Resize(resize), T.CenterCrop(size), T.PILToTensor()])
    return Compose([Resize(resize), CenterCrop(size), ToUint8Tensor()])


def image_folder(root: Path, transform, classes: list[str] | None, use_torchvision: bool) -> Dataset:
    """torchvision's ImageFolder when asked (same layout, same sorted class order), else the built-in one."""
    if use_torchvision:
        from torchvision.datasets import ImageFolder as TVImageFolder

        ds = TVImageFolder(str(root), transform=transform)
        if classes is not None and ds.classes != list(classes):
            raise ValueError(f"{root} has classes {ds.classes[:5]}..., the training set {list(classes)[:5]}...")
        return ds
    return ImageFolder(root, transform, classes)


def normalize(batch: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float32 normalised with the ImageNet mean and std, on `device`."""
    x = batch.to(device, non_blocking=True).float().div_(255.0)
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    x = (x - mean) / std
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
