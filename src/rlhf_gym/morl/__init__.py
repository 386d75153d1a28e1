"""Multi-objective RLHF: vector-reward environments, a Bayesian model of a person's trade-off weights,
and a set of policies covering the Pareto front (see ``docs/readme/morl.md``)."""
