"""The executions part: strategies that pause to ask the host's LLM, and the host's answers.

Its modules, bottom to top: `records` (the records, the strategy contexts and the
per-session accounting), `registry` (where sessions are found, live or finished),
`messages` (what the session actors and the GC take); then, above `greenroom.actors`
(`actors.execution`, `actors.execution_gc`), `namespace` (`rt.executions`, and the
seam `greenroom.aio.executions` awaits).
"""
