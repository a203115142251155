"""Where and how work runs: the device and processes, the one training and inference loops, progress, files."""
