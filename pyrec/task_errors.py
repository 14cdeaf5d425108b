"""Errors of the task domain. The task manager raises them; the API maps each family to an
HTTP status in one place (api.py); their messages are the Record API contract's."""
from __future__ import annotations

__all__ = ["TaskError", "TaskNotFound", "DuplicateTask", "InvalidTaskSpec", "TooManyTasks",
           "UnknownVhost", "UnknownApp"]


class TaskError(Exception):
    """Base of the domain errors; `message` is the contract's text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidTaskSpec(TaskError):
    """A task description (a :startRecord body, an auto-record rule) that cannot run."""

    @classmethod
    def field(cls, name: str, why: str) -> InvalidTaskSpec:
        return cls(f"Invalid [{name}] parameter: {why}")


class TooManyTasks(TaskError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"Too many recording tasks (limit {limit})")
        self.limit = limit


class DuplicateTask(TaskError):
    def __init__(self, task_id: str) -> None:
        super().__init__("Duplicate ID already exists")
        self.task_id = task_id


class TaskNotFound(TaskError):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"There is no record information related to the ID [{task_id}]")
        self.task_id = task_id


class UnknownVhost(TaskError):
    def __init__(self, vhost: str) -> None:
        super().__init__(f"Could not find the virtual host: [{vhost}]")


class UnknownApp(TaskError):
    def __init__(self, vhost: str, app: str) -> None:
        super().__init__(f"Could not find the application: [{vhost}/{app}]")
