"""The process and its files: output folders committed atomically (`outputs`), locks, Ctrl-C (`interrupt`), the
distributed start, checkpoints, the compilation cache and XLA:CPU's options. Above the core, below the data."""
