"""What every other folder builds on, importing neither torch nor Lightning: errors, config fields and their
validation, registries, and atomic files."""
