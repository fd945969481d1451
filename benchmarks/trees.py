"""Realistic parameter trees (PyTorch layouts, timm names) for the benchmarks."""
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
