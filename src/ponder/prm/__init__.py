"""A process reward model for ponder's own policy, made the way Snell et al. made theirs.

`label`: Monte Carlo step labels from the policy's own samples (Math-Shepherd's soft estimate: the
fraction of rollouts from a step that reach the right answer). `features` and `head`: a small value
head on the frozen policy's hidden states at step ends. `train`: soft-label cross-entropy with early
stopping. `verifier`: the head as a `Verifier`, reading the states the engine computed while it
generated, or computing them in a separate pass when it must. `evaluate`: step AUC and selection.
"""
