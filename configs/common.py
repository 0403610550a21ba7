"""Presets more than one config (or lab/ run) applies: each changes a
config in place and returns it."""


def late_fusion(config):
  """Stage 2 as stage 1's network unchanged plus an L2-penalised linear
  path from the PCA vector to the logits (the PCA vector kept out of the
  dense layers), 16 cyclic epochs (BUILD.md, "Quality on recorded
  sounds")."""
  config.model.pca_head = True
  config.model.pca_into_mlp = False
  config.model.pca_head_l2 = 0.03
  config.schedule.cyclic_epochs = 16
  return config


def curated_noisy(config):
  """FSDKaggle2019's two sources: validated on curated clips, noisy ones
  at half weight (what the config already sets is kept)."""
  config.input.val_sources = config.input.val_sources or "curated"
  config.source_weights = config.source_weights or "noisy=0.5"
  return config
