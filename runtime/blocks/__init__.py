"""The blocks part."""
