"""Chapter 06_tuning: the studies and figures of chapters/06_tuning.ipynb."""
