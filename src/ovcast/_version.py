"""The ovcast version, in a module of its own: modules that report it import this one, never
the package root (whose imports would then run back up the import graph)."""

__version__ = "0.1.0"
