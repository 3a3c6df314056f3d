"""Chapter 03_data: the studies and figures of chapters/03_data.ipynb."""
