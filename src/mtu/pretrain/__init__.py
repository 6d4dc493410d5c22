"""The shapes-base recipe: a tiny Stable Diffusion model trained from scratch on the Shapes world.

`tokenizer` builds the closed-vocabulary CLIP tokenizer, `components` the diffusers / transformers
networks, `train` runs the two-stage recipe (`pretrain_shapes`) and `export` writes the shipped folder.
"""

from mtu.pretrain.components import TINY_SIZES, ModelSizes
from mtu.pretrain.config import PretrainConfig
from mtu.pretrain.tokenizer import build_tokenizer, save_tokenizer
from mtu.pretrain.train import export_run, pretrain_shapes

__all__ = [
    "TINY_SIZES",
    "ModelSizes",
    "PretrainConfig",
    "build_tokenizer",
    "export_run",
    "pretrain_shapes",
    "save_tokenizer",
]
