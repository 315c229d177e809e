"""A run's settings and its optimisation: the config, the batch of variants, the plan of stages and
tiles, the compiled chunks and the one chunk loop, checkpoints and progress. Returns results; it
writes no files. Imports only the layers below."""
