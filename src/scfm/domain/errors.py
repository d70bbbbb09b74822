"""Domain errors: each maps to one HTTP answer, once, in the app factory."""


class DomainError(Exception):
    pass


class NotFound(DomainError):
    def __init__(self, resource: str = "record"):
        super().__init__(f"{resource} not found")
        self.resource = resource


class ValidationFailed(DomainError):
    """422 with Rails-style errors: {"field": ["message", ...]}."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__("; ".join(f"{k} {', '.join(v)}" for k, v in errors.items()))
        self.errors = errors

    @classmethod
    def on(cls, field: str, message: str) -> "ValidationFailed":
        return cls({field: [message]})


class EventNotAllowed(ValidationFailed):
    def __init__(self, event: str, status: str):
        super().__init__({"event": ["is not included in the list"]})
        self.event = event
        self.status = status


class DeleteRefused(ValidationFailed):
    def __init__(self, reason: str):
        super().__init__({"base": [f"Cannot delete record because {reason}"]})


class Unavailable(DomainError):
    """A backing service (database, Redis) cannot be reached."""
