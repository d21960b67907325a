"""HTML reports rendered from a result document (imports nothing from ``audit``)."""

__all__: list[str] = []
