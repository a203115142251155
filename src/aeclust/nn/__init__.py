"""Network parts: models (backbones, heads), objectives (losses), augment (views)."""
