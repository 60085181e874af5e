"""greenroom's actors: the `GreenroomActor` base and, later, the actors built on it."""

from actors.base import ActorContext, GreenroomActor, GreenroomActorRef

__all__ = ["ActorContext", "GreenroomActor", "GreenroomActorRef"]
