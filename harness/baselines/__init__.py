"""Handlers kept to compare against; not for production."""
