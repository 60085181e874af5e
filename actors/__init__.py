"""greenroom's actors: the `GreenroomActor` base for a host's own actors, and its context."""

from greenroom.actors.base import ActorContext, GreenroomActor, GreenroomActorRef, current_actor

__all__ = ["ActorContext", "GreenroomActor", "GreenroomActorRef", "current_actor"]
