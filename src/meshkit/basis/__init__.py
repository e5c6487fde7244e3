"""The basis: the framework every meshkit service stands on."""
