"""Donjon's demo: a local Steward that trusts simulated TEEs, and an attested simulated Keep. See docs/demo.md."""
