"""Chapter 02_emergence: the studies and figures of chapters/02_emergence.ipynb."""
