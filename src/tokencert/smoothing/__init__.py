"""Randomized smoothing (Cohen, Rosenfeld and Kolter 2019): the algorithm (:mod:`.core`, ``Smooth``),
the batched noise engine (:mod:`.noise`) and the job (:mod:`.job`)."""

from .core import ABSTAIN, CHANCE_SLACK, Smooth, chance_level, check_params, lower_confidence_bound, max_radius
from .job import TSV_FIELDS, certify_images, select_indices, smooth_classifier, summarize_rows, write_tsv
from .noise import NOISE_CHUNK, PRECISIONS, batch_size_for, group_size, prepare, sample_counts, sample_counts_many

__all__ = ["ABSTAIN", "CHANCE_SLACK", "NOISE_CHUNK", "PRECISIONS", "TSV_FIELDS", "Smooth", "batch_size_for",
           "certify_images", "chance_level", "check_params", "group_size", "lower_confidence_bound", "max_radius",
           "prepare", "sample_counts", "sample_counts_many", "select_indices", "smooth_classifier", "summarize_rows",
           "write_tsv"]
