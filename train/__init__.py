"""The gated trainer (torch lives only here). Not yet implemented: see issue 5."""
