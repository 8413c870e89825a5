"""Data: geometry of masked depth -> points, synthetic NOCS-style scenes, data set readers, training cache."""
