"""Experiment configs, the two-stage trainer, checkpoints and data-parallel set-up."""
