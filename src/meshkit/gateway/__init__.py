"""The API gateway: the single entry point of a meshkit system."""
