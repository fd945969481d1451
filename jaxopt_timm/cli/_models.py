"""Small Flax linen models for the digits job, named so timm-style layer decay groups them.

Leaves are named ``stem.*``, ``blocks_N.*`` and ``head.*``; :data:`GROUP_MATCHER`
gives timm's ordering (stem first, one id per block, the head last).
"""

from __future__ import annotations

from typing import Any, Dict

import flax.linen as nn
import jax.numpy as jnp

__all__ = ['MLP', 'SmallCNN', 'GROUP_MATCHER', 'make_model', 'MODELS']

GROUP_MATCHER = {'stem': r'^stem\.', 'blocks': r'^blocks_(\d+)\.'}


class MLP(nn.Module):
    """stem Dense -> ``depth`` residual Dense blocks -> head; inputs are flat 8x8 digit images."""

    width: int = 128
    depth: int = 1
    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(self.width, name='stem')(x))
        for i in range(self.depth):
            x = x + nn.relu(nn.Dense(self.width, name=f'blocks_{i}')(x))
        return nn.Dense(self.num_classes, name='head')(x)


class SmallCNN(nn.Module):
    """stem 3x3 conv -> ``depth`` strided 3x3 conv blocks -> global average -> head (NHWC 8x8x1 inputs)."""

    width: int = 32
    depth: int = 2
    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = x.reshape((x.shape[0], 8, 8, 1))
        x = nn.relu(nn.Conv(self.width, (3, 3), name='stem')(x))
        for i in range(self.depth):
            x = nn.relu(nn.Conv(self.width, (3, 3), strides=(2, 2), name=f'blocks_{i}')(x))
        x = x.mean(axis=(1, 2))
        return nn.Dense(self.num_classes, name='head')(x)


MODELS = {'mlp': MLP, 'cnn': SmallCNN}  # _train_args.MODEL_NAMES lists these keys for the parser


def make_model(name: str, width: int = 0, depth: int = -1) -> nn.Module:
    cls = MODELS[name]
    kw: Dict[str, Any] = {}
    if width:
        kw['width'] = width
    if depth >= 0:
        kw['depth'] = depth
    return cls(**kw)
