"""The training loop and what it needs: hooks (reset schedule, ReDo, probes), evaluation, checkpoints, logging."""
