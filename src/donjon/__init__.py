"""Donjon: run WebAssembly workloads in Trusted Execution Environments, and prove it."""

__version__ = "0.1.0"

__all__ = ["__version__"]
