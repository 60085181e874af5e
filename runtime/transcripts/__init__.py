"""The transcripts part: one append-only JSONL conversation log per agent session.

`records` (messages, settings, results), `logformat` (the file, reading it back),
`compaction` (where to cut, the default summary), `messages` (what the actor answers),
`handle` (`Transcript`) and `namespace` (`rt.transcripts`).
"""
