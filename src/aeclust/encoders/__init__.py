"""Encoders: images → features, each kind fitted, saved and loaded alike."""
