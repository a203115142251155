"""Refining clusters after the clustering stage: SCAN's neighbour consistency and self-labelling."""
