import pytest
import torch

from spriteforge.data.dataset import ImageSet


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)


def tiny_imageset(n: int = 24, size: int = 16, channels: int = 4, classes: int = 2, seed: int = 0) -> ImageSet:
    """Small synthetic sprite-like data: a coloured square per class on a transparent background."""
    g = torch.Generator().manual_seed(seed)
    imgs = torch.zeros(n, channels, size, size, dtype=torch.uint8)
    labels = torch.arange(n) % classes
    for i in range(n):
        o = int(torch.randint(1, size // 4, (1,), generator=g))
        colour = torch.tensor([255, 40, 40] if labels[i] == 0 else [40, 40, 255], dtype=torch.uint8)
        imgs[i, :3, o:o + size // 2, o:o + size // 2] = colour[:, None, None]
        if channels == 4:
            imgs[i, 3, o:o + size // 2, o:o + size // 2] = 255
    return ImageSet(imgs, [f"synthetic:{i}" for i in range(n)], [None] * n, labels, [f"c{k}" for k in range(classes)])


@pytest.fixture
def tiny_data():
    return tiny_imageset()
