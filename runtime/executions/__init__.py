"""The executions part."""
