"""Chapter 08_kernels: the studies and figures of chapters/08_kernels.ipynb."""
