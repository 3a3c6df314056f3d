"""Transformer models and their building blocks (Survey §4.2, architecture)."""
