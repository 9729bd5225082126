"""The error tree shared by every part of brokerhooks.

    BrokerhooksError
    ├── ConfigurationError   a setting is missing or wrong; names the setting
    ├── NotFound             a broker, event or other record does not exist
    ├── Conflict             the request clashes with what is stored
    └── StoreUnavailable     the database cannot be reached; try again later

Each package subclasses these by what the caller can do about them. The CLI
turns them into messages and exit codes in one place (``brokerhooks.cli``).
"""


class BrokerhooksError(Exception):
    """Base class of every error brokerhooks raises on purpose."""


class ConfigurationError(BrokerhooksError):
    """A setting is missing or invalid. The message names the setting."""


class NotFound(BrokerhooksError):
    """The record asked for does not exist."""


class Conflict(BrokerhooksError):
    """The request clashes with what is stored (a duplicate name, say)."""


class StoreUnavailable(BrokerhooksError):
    """The store could not be reached or refused the write."""
