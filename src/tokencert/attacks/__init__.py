"""Attacks on tokenized classifiers, judged on the hard model (all L2 in [0,1] pixel space).

The attack names and which classifiers each applies to are :mod:`tokencert.study`'s.
"""

from ..outcomes import AttackOutcome
from ..units import norms, project
from .base import check_attack_params
from .pgd import pgd
from .suite import clean_accuracy, register_attack, run_attack, sanity_warnings, worst_case

__all__ = ["AttackOutcome", "check_attack_params", "clean_accuracy", "norms", "pgd", "project", "register_attack",
           "run_attack", "sanity_warnings", "worst_case"]
