"""Conversion: HuggingFace checkpoint -> OpenVINO model package (needs ``ovcast[convert]``).

The only part of ovcast, with ``ovcast.train`` and the benchmarks, that imports torch.
"""

from .pipeline import convert

__all__ = ["convert"]
