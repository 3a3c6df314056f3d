"""Chapter 05_training: the studies and figures of chapters/05_training.ipynb."""
