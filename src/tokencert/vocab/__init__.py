"""Vocabularies: Gaussian (frozen), k-means and learned tokens, and their quality metrics."""

from .base import Vocabulary

__all__ = ["Vocabulary"]
