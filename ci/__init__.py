"""Pipeline steps: one small module per step, each with a command line."""
