"""Ready ``group_matcher`` builders for Flax models named the usual Flax way (for layer-wise lr decay).

timm models expose ``group_matcher(coarse)``; Flax models have none, and their
param names differ from timm's (``Transformer.encoderblock_3.MlpBlock_3.Dense_0.kernel``
instead of ``blocks.3.mlp.fc1.weight``). These return matchers in timm's dict
format for :func:`jaxopt_timm.create_optimizer_v2` (``group_matcher=...``),
giving the same layer ids timm's own ViT/ResNet matchers give: the stem first,
one id per block, the final norm merged into the last block, the head last.
"""

from __future__ import annotations

from typing import Dict

from ._param_groups import MATCH_PREV_GROUP

__all__ = ['vit_group_matcher', 'flax_vit_group_matcher', 'flax_resnet_group_matcher']


def vit_group_matcher(coarse: bool = False) -> Dict:
    """timm's ``VisionTransformer.group_matcher`` for trees that use timm's names (``blocks.N``, ``pos_embed``)."""
    return {
        'stem': r'^cls_token|pos_embed|patch_embed',
        'blocks': r'^blocks\.(\d+)' if coarse else [(r'^blocks\.(\d+)', None), (r'^norm', MATCH_PREV_GROUP)],
    }


def flax_vit_group_matcher(coarse: bool = False) -> Dict:
    """ViTs written the Flax way (google-research/vision_transformer, big_vision, scenic).

    Stem: ``cls``, ``embedding``, ``*posembed_input*`` / ``*pos_embedding``;
    blocks: ``*encoderblock_N*`` (under ``Transformer``, ``Encoder_0``, ...);
    ``*encoder_norm*`` joins the last block; anything else (``head``, ``pre_logits``) is last.
    """
    blocks = r'^(?:.*\.)?encoderblock_(\d+)\.'
    return {
        'stem': r'^(?:cls|embedding|(?:.*\.)?posembed_input|(?:.*\.)?pos_embedding)(?:\.|$)',
        'blocks': blocks if coarse else [(blocks, None), (r'^(?:.*\.)?encoder_norm\.', MATCH_PREV_GROUP)],
    }


def flax_resnet_group_matcher(coarse: bool = False) -> Dict:
    """ResNets written the Flax way: flax's examples (``conv_init``, ``bn_init``, ``ResNetBlock_N`` /
    ``BottleneckResNetBlock_N``) or timm-style Flax ports (``conv1``, ``bn1``, ``layer1_0`` or ``layer1.0``).

    As timm's ResNet matcher: fine grouping gives each block its own id,
    ``coarse`` one id per stage (timm-style names only; flax-example names carry
    no stage index, so there coarse equals fine).
    """
    stage_block = r'^layer(\d+)[._](\d+)\.'
    stage = r'^layer(\d+)[._]'
    return {
        'stem': r'^(?:conv1|bn1|conv_init|bn_init)\.',
        'blocks': [
            (stage if coarse else stage_block, None),
            (r'^(?:Bottleneck)?ResNetBlock_(\d+)\.', None),
        ],
    }
