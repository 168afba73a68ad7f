"""Source and target backends; see base.py for the Protocols and the registry."""
