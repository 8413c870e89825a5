"""Data: masked depth -> points, synthetic NOCS-style scenes, data set readers, training cache."""
