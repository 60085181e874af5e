"""The transcripts part."""
