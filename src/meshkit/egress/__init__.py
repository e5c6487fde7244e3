"""External service gateways: the only code that talks to the outside world."""
