"""The replay part: per-session event buffers with cursors, gaps and live subscriptions.

From the bottom up: `records` (events, `Replayed`, `Gap` and the gap rules), `slot`
(what the facade and a buffer actor share), `subscription` (a live subscription's
queue), `messages` (what a buffer actor handles, and the input checks), then above
the actors (`greenroom.actors.replay`) `follower` (`follow`'s iterator) and
`namespace` (`rt.replay`, and the seam `greenroom.aio.replay` is built on).
"""
