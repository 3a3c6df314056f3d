"""Chapter 01_scaling_laws: the studies and figures of chapters/01_scaling_laws.ipynb."""
