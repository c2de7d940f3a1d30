"""Helpers shared by every domain: imported by assets and plain modules, importing nothing of theirs."""
