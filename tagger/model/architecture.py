"""The network's settings in two typed shapes, from the config's
ModelConfig (settings.py) to build_model: `Architecture`, what shapes its
weights (data.json records it and rebuilds the same network), and
`TrainOptions`, what training sets that its weights do not record.

  config.model --settings.model_config--> ModelConfig
      --architecture_of(cfg, data, stage2)--> Architecture  (data.json)
      --train_options(cfg)-->                 TrainOptions
"""

import dataclasses
from typing import Optional

from tagger import settings

# The settings of Architecture that data.json records under "architecture"
# (the rest come from the data: labels, PCA width, mel bands).
_DATA_FIELDS = ("num_classes", "pca_dim", "num_mels")


@dataclasses.dataclass(frozen=True)
class Architecture:
  """What shapes the network's weights: a model dir's data.json records
  it (`architecture`, with the labels, PCA width and mel bands), and
  rebuilds the same network from it.

  pca_dim: 0 builds stage 1, else stage 2 (inputs: dict log_mel
  [B, num_mels, T, 1], T free, and for stage 2 pca [B, pca_dim]).
  backbone: a registered name (backbones.BACKBONES); alpha: its width
  (MobileNetV2's:
  the reference 1.0; ImageNet weights exist for 0.35, 0.5, 0.75, 1.0, 1.3,
  1.4). pca_head (stage 2, not in the reference): a linear path from the
  normalised PCA vector straight to the logits, added to the network's
  (zero-initialised, so training starts from the network alone). The
  network can then be at least a logistic regression on the PCA vectors,
  which on small datasets it otherwise is not (BUILD.md, "Quality on
  recorded sounds"). pca_into_mlp=False (with pca_head) keeps the PCA
  vector out of the dense layers: stage 2 is then stage 1's network, all
  of whose weights transfer, plus the linear path. multi_label: a sigmoid
  head, one independent probability per class (several labels per clip),
  instead of the softmax. input_norm: 'batch' (the reference: the fixed dB
  bounds, then BatchNorm), 'clip' or 'clip_band' (ClipStandardization
  first: level- and channel-free). head: 'mlp' (the reference's dense
  layers 1536-384) or 'linear' (one Dense from the pooled features to the
  outputs: what a logistic regression on frozen features fills in,
  tagger/recipe.py)."""
  num_classes: int
  pca_dim: int = 0
  num_mels: int = 64
  backbone: str = "mobilenet_v2"
  alpha: float = 1.0
  pca_head: bool = False
  pca_into_mlp: bool = True
  multi_label: bool = False
  input_norm: str = "batch"
  head: str = "mlp"


@dataclasses.dataclass(frozen=True)
class TrainOptions:
  """What training sets in the network that its weights do not record.

  backbone_weights: where the backbone starts ('none', 'imagenet', a
  path). bn_momentum: every BatchNorm's (None: Keras' own). dropout: before
  the first dense layer and before the logits (training only; not in the
  reference). pca_head_l2: an L2 penalty on the linear PCA path (as
  logistic regression's C: about 1 / (2 C N) for N training clips).
  freeze_backbone: the backbone's weights (and BatchNorm statistics) stay
  as built: a probe of pretrained features (only the head trains).
  freeze_backbone_bn: only the backbone's BatchNorm layers stay as built
  (inference mode: pretrained statistics, scale and offset) while its
  convolutions fine-tune; the statistics of the pretraining data are then
  not replaced by those of a small training set's few sources.
  freeze_backbone_until: a layer of the backbone (for CNN9 'cnn9_b2_bn2');
  it and every layer before it stay as built (partial fine-tuning: the
  pretrained low-level filters are kept, and their backward pass is not
  computed)."""
  backbone_weights: str = "none"
  bn_momentum: Optional[float] = None
  dropout: float = 0.0
  pca_head_l2: float = 0.0
  freeze_backbone: bool = False
  freeze_backbone_bn: bool = False
  freeze_backbone_until: str = ""

  @property
  def pretrained(self) -> Optional[str]:
    """backbone_weights as the backbone reads them: None for random
    initialisation ('none' or unset), else 'imagenet' or a path."""
    return (None if self.backbone_weights in ("", "none", None)
            else self.backbone_weights)


def architecture_of(cfg: settings.ModelConfig, data,
                    stage2: bool) -> Architecture:
  """The network cfg builds on data (num_classes, pca_dim, num_mels and
  multi_label of a DataInfo or DataDescription): the PCA path at stage 2
  only."""
  pca_head = cfg.pca_head and stage2
  return Architecture(
      int(data.num_classes), int(data.pca_dim) if stage2 else 0,
      int(data.num_mels), backbone=cfg.backbone, alpha=float(cfg.alpha),
      pca_head=pca_head, pca_into_mlp=cfg.pca_into_mlp or not pca_head,
      multi_label=bool(data.multi_label), input_norm=cfg.input_norm,
      head=cfg.head)


def recorded(arch: Architecture) -> dict:
  """data.json's "architecture": what the data does not already say."""
  return {k: v for k, v in dataclasses.asdict(arch).items()
          if k not in _DATA_FIELDS}


def train_options(cfg: settings.ModelConfig,
                  **overrides) -> TrainOptions:
  """cfg's training-only settings (overrides: e.g. freeze_backbone=True)."""
  values = {f.name: getattr(cfg, f.name)
            for f in dataclasses.fields(TrainOptions)}
  return TrainOptions(**{**values, **overrides})
