"""Vocabularies: Gaussian (frozen), k-means and learned tokens, and their quality metrics."""

from .base import Vocabulary
from .build import BUILDERS, build_vocabulary, register_kind
from .metrics import quality_metrics, usage_statistics
from .quantize import soft_tokenize, tokenize

__all__ = ["BUILDERS", "Vocabulary", "build_vocabulary", "quality_metrics", "register_kind", "soft_tokenize",
           "tokenize", "usage_statistics"]
