"""The replay part."""
