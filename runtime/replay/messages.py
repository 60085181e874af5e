"""The messages the replay actors handle."""
