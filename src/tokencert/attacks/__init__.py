"""Attacks on tokenized classifiers, judged on the hard model (all L2 in [0,1] pixel space)."""

from .base import ATTACKS, AttackOutcome, check_attack_params, norms, project
from .pgd import pgd
from .suite import applicable, clean_accuracy, run_attack, sanity_warnings, worst_case

__all__ = ["ATTACKS", "AttackOutcome", "applicable", "check_attack_params", "clean_accuracy", "norms", "pgd",
           "project", "run_attack", "sanity_warnings", "worst_case"]
