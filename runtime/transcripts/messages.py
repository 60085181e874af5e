"""The messages the transcripts actors handle."""
