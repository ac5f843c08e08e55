class TokensPrompt(dict):
    """A plain dict, as vLLM's TypedDict is."""
