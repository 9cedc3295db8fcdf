"""Plumbing every command shares: devices and data parallelism, checkpoints,
fast initialisation, config checks and loading, the console, CLI errors, the
process environment, workdir locks, image grids and fixed-size batching."""
