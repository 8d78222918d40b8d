"""Serving: one protocol core (``protocol``) behind two front ends, JSON lines and HTTP."""
