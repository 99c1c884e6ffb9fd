"""Errors a user can act on, in a module light enough for the CLI to import up front."""


class RegistryError(RuntimeError):
    """The model registry is not in a state the command can act on (one-line message)."""
