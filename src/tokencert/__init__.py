"""tokencert: certified robustness through input sparsity (tokenized images)."""

__version__ = "0.1.0"
