"""Vocabularies: Gaussian (frozen), k-means and learned tokens, and their quality metrics."""

from .base import Vocabulary
from .build import KINDS, build_vocabulary
from .metrics import quality_metrics, usage_statistics
from .quantize import soft_tokenize, tokenize

__all__ = ["KINDS", "Vocabulary", "build_vocabulary", "quality_metrics", "soft_tokenize", "tokenize",
           "usage_statistics"]
