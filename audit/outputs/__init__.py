"""Outputs of a result: JSON/HTML emission, JUnit, SARIF, GitHub annotations, source locations, report data."""

__all__: list[str] = []
