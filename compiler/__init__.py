"""Elaboration, graph IR, op registry, shape inference, analyses and the CLI."""

from .api import CompiledNetwork, compile_file, compile_string

__all__ = ["CompiledNetwork", "compile_file", "compile_string"]
