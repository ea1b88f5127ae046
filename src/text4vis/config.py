class ConfigError(Exception):
    """A config that cannot be used; the message names the file and key."""
