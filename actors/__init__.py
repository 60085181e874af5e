"""greenroom's actors: the `GreenroomActor` base and, later, the actors built on it."""

from greenroom.actors.base import ActorContext, GreenroomActor, GreenroomActorRef, current_actor

__all__ = ["ActorContext", "GreenroomActor", "GreenroomActorRef", "current_actor"]
