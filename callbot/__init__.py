"""callbot: an outbound calling robot for residential committees (居委会)."""

__version__ = "0.1.0"
