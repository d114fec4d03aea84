"""Placeholder wiring; the owning issue fills this in."""


def register(subparsers) -> None:
    pass
