"""Evaluation and reporting the way the field does it (paper §4.1; Agarwal et al. 2021, "rliable").

- `reference`: Atari random/human scores and the paper's published numbers (shipped under `reference/`);
- `scores`: run directories and score CSVs -> per-run final scores, human-normalized on Atari;
- `aggregates`: IQM, median, mean, optimality gap with stratified bootstrap CIs, probability of improvement,
  performance profiles (numpy, same definitions and resampling as rliable);
- `tables`, `figures`: the paper's tables (Markdown, CSV, LaTeX) and figures (PNG, PDF);
- `commands`: the `plastic report` command.
"""
