"""smoothbench: a reproduction pipeline for Mezzini's empirical study on label smoothing."""

__version__ = "0.1.0"
