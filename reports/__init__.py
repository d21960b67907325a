"""HTML reports rendered from a result document (imports only ``schemas``)."""
