"""Chapter 04_architectures: the studies and figures of chapters/04_architectures.ipynb."""
