"""Calling other services by name: load balancing, deadlines, retries, breakers."""
