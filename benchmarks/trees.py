"""Realistic parameter trees (timm names) for the benchmarks.

Shapes are written in PyTorch's layouts (what timm's torch optimizers see). The JAX side of the
benchmark runs on the same tensors in Flax's layouts (``flax_shapes``): a Flax model stores a conv
kernel as ``(kH, kW, I, O)`` and a Dense kernel as ``(in, out)``. The layout matters on XLA:CPU,
whose elementwise loops vectorize the trailing dimension: the ``(O, I, 3, 3)`` torch layout leaves
it 3 wide (AdamW on ResNet-50's tree: 33.6 ms in torch layout, 16.2 ms in Flax layout, 2-core CPU).
"""
from __future__ import annotations

from typing import Dict, Tuple

import jax.numpy as jnp
import numpy as np


def vit_shapes(embed: int = 768, depth: int = 12, mlp: int = 3072, patch: int = 16, tokens: int = 197,
               classes: int = 1000) -> Dict[str, Tuple[int, ...]]:
    """ViT-B/16 by default: 152 leaves, 86.6M params."""
    shapes = {
        'cls_token': (1, 1, embed),
        'pos_embed': (1, tokens, embed),
        'patch_embed.proj.weight': (embed, 3, patch, patch),
        'patch_embed.proj.bias': (embed,),
    }
    for i in range(depth):
        b = f'blocks.{i:02d}.'  # zero-padded so sorted dict keys keep block order
        shapes.update({
            b + 'norm1.weight': (embed,), b + 'norm1.bias': (embed,),
            b + 'attn.qkv.weight': (3 * embed, embed), b + 'attn.qkv.bias': (3 * embed,),
            b + 'attn.proj.weight': (embed, embed), b + 'attn.proj.bias': (embed,),
            b + 'norm2.weight': (embed,), b + 'norm2.bias': (embed,),
            b + 'mlp.fc1.weight': (mlp, embed), b + 'mlp.fc1.bias': (mlp,),
            b + 'mlp.fc2.weight': (embed, mlp), b + 'mlp.fc2.bias': (embed,),
        })
    shapes.update({'norm.weight': (embed,), 'norm.bias': (embed,),
                   'head.weight': (classes, embed), 'head.bias': (classes,)})
    return shapes


VIT_GROUP_MATCHER = {
    'stem': r'^cls_token|pos_embed|patch_embed',
    'blocks': [(r'^blocks\.(\d+)', None), (r'^norm', (99999,))],
}


def flax_shape(name: str, shape: Tuple[int, ...]) -> Tuple[int, ...]:
    """The Flax layout of a torch-layout weight: conv ``(O, I, *k) -> (*k, I, O)``, Linear ``(out, in) -> (in, out)``.

    Only ``*.weight`` leaves are kernels; tokens and position embeddings keep their shape.
    """
    if not name.endswith('weight') or len(shape) < 2:
        return tuple(shape)
    if len(shape) == 2:
        return (shape[1], shape[0])
    return tuple(shape[2:]) + (shape[1], shape[0])


def flax_shapes(shapes: Dict[str, Tuple[int, ...]]) -> Dict[str, Tuple[int, ...]]:
    """Every leaf of a torch-layout shape table in Flax's layout (same names, same sizes)."""
    return {name: flax_shape(name, shape) for name, shape in shapes.items()}


def make_tree(shapes: Dict[str, Tuple[int, ...]], seed: int = 0, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    tree: Dict = {}
    for name, shape in shapes.items():
        node = tree
        *parents, leaf = name.split('.')
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = jnp.asarray(rng.standard_normal(shape, dtype=np.float32) * 0.02, dtype=dtype)
    return tree


def num_params(shapes) -> int:
    return int(sum(np.prod(s) for s in shapes.values()))


def resnet50_shapes(classes: int = 1000) -> Dict[str, Tuple[int, ...]]:
    """timm's ResNet-50: 161 leaves (53 convs without bias, 53 BatchNorms' weight and bias, fc), 25.6M params."""
    shapes: Dict[str, Tuple[int, ...]] = {'conv1.weight': (64, 3, 7, 7), 'bn1.weight': (64,), 'bn1.bias': (64,)}
    in_ch = 64
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), start=1):
        out_ch = width * 4
        for i in range(blocks):
            b = f'layer{stage}.{i}.'
            cin = in_ch if i == 0 else out_ch
            shapes.update({
                b + 'conv1.weight': (width, cin, 1, 1), b + 'bn1.weight': (width,), b + 'bn1.bias': (width,),
                b + 'conv2.weight': (width, width, 3, 3), b + 'bn2.weight': (width,), b + 'bn2.bias': (width,),
                b + 'conv3.weight': (out_ch, width, 1, 1), b + 'bn3.weight': (out_ch,), b + 'bn3.bias': (out_ch,),
            })
            if i == 0:
                shapes.update({b + 'downsample.0.weight': (out_ch, cin, 1, 1),
                               b + 'downsample.1.weight': (out_ch,), b + 'downsample.1.bias': (out_ch,)})
        in_ch = out_ch
    shapes.update({'fc.weight': (classes, 2048), 'fc.bias': (classes,)})
    return shapes


def small_leaves_shapes(n_leaves: int = 2000, size: int = 1000) -> Dict[str, Tuple[int, ...]]:
    """Many small leaves: ``n_leaves`` vectors of ``size`` floats (2M params by default)."""
    return {f'p{i:05d}.weight': (size,) for i in range(n_leaves)}


def equal_leaves_shapes(total: int, n_leaves: int = 16) -> Dict[str, Tuple[int, ...]]:
    """``n_leaves`` equal 1-d leaves summing to ``total`` params (the 1M -> 64M growth series)."""
    return {f'p{i:02d}.weight': (total // n_leaves,) for i in range(n_leaves)}


def vitl_shapes() -> Dict[str, Tuple[int, ...]]:
    """ViT-L/16: 296 leaves, 304M params."""
    return vit_shapes(embed=1024, depth=24, mlp=4096)


TREES = {
    'resnet50': resnet50_shapes,
    'vitb16': vit_shapes,
    'small2000': small_leaves_shapes,
    'vitl16': vitl_shapes,
}
