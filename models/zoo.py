"""PyTorch definitions of the example models that ship as ONNX files in models/.

Each model has a ``make_<name>()`` factory (seeded, eval mode) and an entry in
``example_input``. The ONNX files are produced by ``models/build.py``; keep the
two in sync when changing anything here, since the byte-for-byte output of the
build depends on parameter creation order and seeds.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

NAMES = ("cnn", "transformer", "digits_cnn")

# Fixed so that the digits split, and therefore digits_test.npz, never moves.
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.25


class ConvBnRelu(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class SmallCNN(nn.Module):
    """[1, 3, 32, 32] image -> [1, 10] class probabilities."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.block1 = ConvBnRelu(3, 16)
        self.block2 = ConvBnRelu(16, 32, stride=2)  # 32x32 -> 16x16
        self.pool = nn.MaxPool2d(2)  # 16x16 -> 8x8
        self.block3 = ConvBnRelu(32, 32)
        self.block4 = ConvBnRelu(32, 64, stride=2)  # 8x8 -> 4x4
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(64, num_classes)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.block2(self.block1(x)))
        x = self.block4(self.block3(x))
        return self.softmax(self.fc(self.flatten(self.gap(x))))


class SelfAttention(nn.Module):
    """Multi-head self-attention spelled out op by op.

    nn.MultiheadAttention would export fine too, but writing the Reshape /
    Transpose / MatMul / Softmax chain by hand keeps every intermediate as a
    separately named ONNX node, which is what a layer-by-layer comparison needs.
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        assert dim % heads == 0
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor, b: int, t: int) -> torch.Tensor:
        return x.reshape(b, t, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q = self._split(self.q(x), b, t)  # [b, h, t, hd]
        k = self._split(self.k(x), b, t)
        v = self._split(self.v(x), b, t)
        scores = torch.matmul(q, k.transpose(2, 3)) * self.scale  # [b, h, t, t]
        attn = torch.softmax(scores, dim=-1)
        ctx = torch.matmul(attn, v).transpose(1, 2).reshape(b, t, d)
        return self.out(ctx)


class EncoderBlock(nn.Module):
    """Post-norm transformer encoder block: [1, 16, 64] -> [1, 16, 64]."""

    def __init__(self, dim: int = 64, heads: int = 4, mlp_ratio: int = 4):
        super().__init__()
        self.attn = SelfAttention(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, dim * mlp_ratio)
        self.act = nn.GELU()  # approximate="none": exports as Erf, the harder op for backends
        self.fc2 = nn.Linear(dim * mlp_ratio, dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.attn(x))
        return self.norm2(x + self.fc2(self.act(self.fc1(x))))


class DigitsCNN(nn.Module):
    """[batch, 1, 8, 8] digit in [0, 1] -> [batch, 10] logits."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)  # 8x8 -> 4x4
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x)))))
        return self.fc2(self.relu3(self.fc1(self.flatten(x))))


def _randomize_batchnorm(model: nn.Module, seed: int) -> None:
    # Freshly built BN has mean 0 / var 1 / gamma 1 / beta 0, i.e. it is the
    # identity up to eps; a backend that drops or mis-fuses BN would go unnoticed.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)


def make_cnn() -> SmallCNN:
    torch.manual_seed(0)
    model = SmallCNN()
    _randomize_batchnorm(model, seed=1)
    return model.eval()


def make_transformer() -> EncoderBlock:
    torch.manual_seed(0)
    model = EncoderBlock()
    # Default LayerNorm affine params are 1/0; perturb them for the same reason as BN.
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for norm in (model.norm1, model.norm2):
            norm.weight.copy_(torch.rand(64, generator=g) + 0.5)
            norm.bias.copy_(torch.randn(64, generator=g) * 0.1)
    return model.eval()


def make_digits_cnn() -> DigitsCNN:
    """Untrained (seeded init); models/build.py trains it before export."""
    torch.manual_seed(0)
    return DigitsCNN().eval()


def make(name: str) -> nn.Module:
    return {"cnn": make_cnn, "transformer": make_transformer, "digits_cnn": make_digits_cnn}[name]()


def load_digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stratified, seeded split of sklearn's digits: x_train, y_train, x_test, y_test.

    Images are float32 [N, 1, 8, 8] scaled to [0, 1] (raw pixels are 0..16);
    labels are int64 [N].
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SPLIT_SEED, stratify=y
    )
    return x_tr, y_tr, x_te, y_te


def example_input(name: str) -> torch.Tensor:
    """The deterministic example input used for export and for the parity checks."""
    g = torch.Generator().manual_seed(1234)
    if name == "cnn":
        return torch.randn(1, 3, 32, 32, generator=g)
    if name == "transformer":
        return torch.randn(1, 16, 64, generator=g)
    if name == "digits_cnn":
        # Real digits rather than noise, and batch 4 rather than 1, so the
        # dynamic batch axis is exercised.
        return torch.from_numpy(load_digits_split()[2][:4].copy())
    raise KeyError(f"unknown model {name!r}; expected one of {NAMES}")
