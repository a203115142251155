"""What the refinement leaves in its directory (kept apart from it, so that reading a run's files does not wait for
torch)."""

REFINE_KIND = "aeclust-refine-checkpoint"
REFINE_CHECKPOINT = "checkpoints/refine.pt"  # inside the directory the refiner is given
