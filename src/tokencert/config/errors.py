"""The one error of invalid study parameters."""

class ConfigError(ValueError):
    """Invalid study parameters; the message names the offending key."""
