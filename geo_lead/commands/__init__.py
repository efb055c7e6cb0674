"""Subcommands of ``geo-lead``; each module has ``register(subparsers)``."""
