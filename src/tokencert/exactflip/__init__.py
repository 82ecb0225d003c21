"""Token classifiers judged exactly: candidate flips with exact cell costs (:mod:`.candidates`), the beam
search over flip sets (:mod:`.search`) as the attack ``tokensearch`` (:mod:`.adversarial`), and the complete
verifier :func:`minimal_flip_radius` (:mod:`.verifier`), whose interval closes the bracket."""

from .adversarial import Adversarial, SearchSettings, token_search
from .verifier import FlipRadius, VerifierSettings, minimal_flip_radius

__all__ = ["Adversarial", "FlipRadius", "SearchSettings", "VerifierSettings", "minimal_flip_radius", "token_search"]
