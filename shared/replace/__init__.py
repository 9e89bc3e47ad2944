"""Spot replacement (issue 14): launch the successor of an interrupted spot instance.

Opt-in by tag (:mod:`shared.replace.policy`), the launch spec captured before it is needed
(:mod:`shared.replace.spec`), the candidates with the reclaimed offering left out
(:mod:`shared.replace.offerings`), the launch keyed in the ledger with a ClientToken per
(instance, candidate) (:mod:`shared.replace.launcher`), run beside the drain
(:mod:`shared.replace.parallel`) and finished or reported by the sweep
(:mod:`shared.replace.sweep`).
"""
