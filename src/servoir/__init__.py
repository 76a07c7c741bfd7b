"""servoir: operations research for LLM serving."""

__version__ = "0.1.0"
