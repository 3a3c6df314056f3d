"""Chapter 00_welcome: the studies and figures of chapters/00_welcome.ipynb."""
