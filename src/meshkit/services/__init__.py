"""Business services (deep backend). Each lives in ``<name>/`` with its contract in ``<name>_sdk/``."""
