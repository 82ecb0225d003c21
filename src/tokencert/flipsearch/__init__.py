"""The exact multi-flip attack on token classifiers: candidate flips with exact cell costs (:mod:`.candidates`),
the beam search over flip sets (:mod:`.search`) and the attack ``tokensearch`` (:mod:`.adversarial`). The
complete verifier built on it is :mod:`tokencert.exactflip` (kept apart, so the attack's code does not
include the flip-set certificate's)."""

from .adversarial import Adversarial, SearchSettings, Settings, token_search

__all__ = ["Adversarial", "SearchSettings", "Settings", "token_search"]
