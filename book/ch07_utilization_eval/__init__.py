"""Chapter 07_utilization_eval: the studies and figures of chapters/07_utilization_eval.ipynb."""
