"""The messages the executions actors handle."""
