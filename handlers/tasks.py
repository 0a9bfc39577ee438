"""Tasks (待办): create, list, update, complete; scoped like leads."""

from __future__ import annotations

from handlers.base import ApiHandler, operation
from server.schemas.tasks import TaskComplete, TaskCreate, TaskOut, TaskPage, TaskQuery, TaskUpdate
from server.services.idempotency import load_existing
from server.services.users import public_id


class TaskListHandler(ApiHandler):
    @operation("Tasks in your scope, soonest due first (?status=open|done&due_before=)", query=TaskQuery, response=TaskPage, tags=("tasks",))
    async def get(self) -> None:
        page = await self.ctx.tasks.list(self.actor, self.parse_query(TaskQuery))
        self.write_page(TaskPage, page, public_id)

    @operation(
        "Create a task (for you, or a member of your team); Idempotency-Key accepted",
        body=TaskCreate, response=TaskOut, status=201, idempotent=True, tags=("tasks",),
    )
    async def post(self) -> None:
        body = self.parse_body(TaskCreate)
        tasks = self.ctx.tasks

        async def create(task_id: str | None) -> dict:
            return (await tasks.create(self.actor, body, task_id))[0]

        doc = await self.idempotent(create, load_existing(tasks.exists, lambda task_id: tasks.get(self.actor, task_id)))
        self.write_model(TaskOut, public_id(doc), 201)


class TaskHandler(ApiHandler):
    @operation("A task", response=TaskOut, tags=("tasks",))
    async def get(self, task_id: str) -> None:
        self.write_model(TaskOut, public_id(await self.ctx.tasks.get(self.actor, task_id)))

    @operation(
        "Edit a task (send version or If-Match; 412 when stale)", body=TaskUpdate, response=TaskOut, versioned=True, tags=("tasks",),
        extra_responses={409: "A follow-up task (change the lead's next_followup_at) or a closed task"},
    )
    async def patch(self, task_id: str) -> None:
        body = self.parse_body(TaskUpdate)
        doc = await self.ctx.tasks.update(self.actor, task_id, body, self.expected_version(body.version))
        self.write_model(TaskOut, public_id(doc))


class TaskCompleteHandler(ApiHandler):
    @operation("Mark a task done (completing twice is harmless)", body=TaskComplete, response=TaskOut, tags=("tasks",))
    async def post(self, task_id: str) -> None:
        body = self.parse_body(TaskComplete)
        self.write_model(TaskOut, public_id(await self.ctx.tasks.complete(self.actor, task_id, body.version)))


routes = [
    (r"/api/v1/tasks", TaskListHandler),
    (r"/api/v1/tasks/(?P<task_id>[^/]+)", TaskHandler),
    (r"/api/v1/tasks/(?P<task_id>[^/]+)/complete", TaskCompleteHandler),
]
