"""Users and teams. Admins write; managers read their own team."""

from __future__ import annotations

from handlers.base import ApiHandler, operation
from server.schemas.common import Page, PageQuery
from server.schemas.users import (
    BindCodeOut, TeamCreate, TeamOut, TeamUpdate, UserCreate, UserListQuery, UserOut, UserUpdate,
)
from server.schemas.team_settings import TeamSettingsOut, TeamSettingsPatch
from server.services.users import public_id, user_out

ADMIN = ("admin",)
READERS = ("admin", "manager")


class UserListHandler(ApiHandler):
    @operation("Create a staff user", roles=ADMIN, body=UserCreate, response=UserOut, status=201, tags=("admin",), extra_responses={409: "The username is taken"})
    async def post(self) -> None:
        doc = await self.ctx.users.create_user(self.actor, self.parse_body(UserCreate))
        self.write_model(UserOut, user_out(doc), 201)

    @operation("List users (a manager sees their team)", roles=READERS, query=UserListQuery, response=Page[UserOut], tags=("admin",))
    async def get(self) -> None:
        page = await self.ctx.users.list_users(self.actor, self.parse_query(UserListQuery))
        self.write_page(Page[UserOut], page, user_out)


class UserHandler(ApiHandler):
    @operation("Read a user", roles=READERS, response=UserOut, tags=("admin",))
    async def get(self, user_id: str) -> None:
        self.write_model(UserOut, user_out(await self.ctx.users.get_user(self.actor, user_id)))

    @operation("Change a user (send version or If-Match)", roles=ADMIN, body=UserUpdate, response=UserOut, versioned=True, tags=("admin",),
               extra_responses={409: "Deactivating a user who still holds work: hand it over first (user.has_open_work)"})
    async def patch(self, user_id: str) -> None:
        body = self.parse_body(UserUpdate)
        # Through the hand-over service: deactivating a user who still holds work needs a hand-over.
        doc = await self.ctx.handover.update_user(self.actor, user_id, body, self.expected_version(body.version))
        self.write_model(UserOut, user_out(doc))


class BindCodeHandler(ApiHandler):
    @operation("Make a one-time code that binds this staff member's WeChat", roles=ADMIN, response=BindCodeOut, status=201, tags=("admin",))
    async def post(self, user_id: str) -> None:
        self.write_model(BindCodeOut, await self.ctx.users.make_bind_code(self.actor, user_id), 201)


class TeamListHandler(ApiHandler):
    @operation("Create a team", roles=ADMIN, body=TeamCreate, response=TeamOut, status=201, tags=("admin",), extra_responses={409: "The team name is taken"})
    async def post(self) -> None:
        doc = await self.ctx.users.create_team(self.actor, self.parse_body(TeamCreate))
        self.write_model(TeamOut, public_id(doc), 201)

    @operation("List teams (a manager sees their own)", roles=READERS, query=PageQuery, response=Page[TeamOut], tags=("admin",))
    async def get(self) -> None:
        query = self.parse_query(PageQuery)
        page = await self.ctx.users.list_teams(self.actor, query.limit, query.cursor)
        self.write_page(Page[TeamOut], page, public_id)


class TeamHandler(ApiHandler):
    @operation("Read a team", roles=READERS, response=TeamOut, tags=("admin",))
    async def get(self, team_id: str) -> None:
        self.write_model(TeamOut, public_id(await self.ctx.users.get_team(self.actor, team_id)))

    @operation(
        "Change a team (send version or If-Match)", roles=ADMIN, body=TeamUpdate, response=TeamOut, versioned=True, tags=("admin",),
        extra_responses={409: "The team name is taken"},
    )
    async def patch(self, team_id: str) -> None:
        body = self.parse_body(TeamUpdate)
        doc = await self.ctx.users.update_team(self.actor, team_id, body, self.expected_version(body.version))
        self.write_model(TeamOut, public_id(doc))


class TeamSettingsHandler(ApiHandler):
    @operation("Read a team's settings: effective values, which groups it customized, its version (a manager: their own team)",
               roles=READERS, response=TeamSettingsOut, tags=("admin",))
    async def get(self, team_id: str) -> None:
        self.write_model(TeamSettingsOut, await self.ctx.users.get_team_settings(self.actor, team_id))

    @operation(
        "Change a team's settings: any groups, any fields of a group; a group set to null goes back to its defaults (send version or If-Match)",
        roles=ADMIN, body=TeamSettingsPatch, response=TeamSettingsOut, versioned=True, tags=("admin",),
    )
    async def patch(self, team_id: str) -> None:
        body = self.parse_body(TeamSettingsPatch)
        self.write_model(TeamSettingsOut, await self.ctx.users.update_team_settings(self.actor, team_id, body, self.expected_version(body.version)))


routes = [
    (r"/api/v1/users", UserListHandler),
    (r"/api/v1/users/(?P<user_id>[^/]+)", UserHandler),
    (r"/api/v1/users/(?P<user_id>[^/]+)/bind-code", BindCodeHandler),
    (r"/api/v1/teams", TeamListHandler),
    (r"/api/v1/teams/(?P<team_id>[^/]+)", TeamHandler),
    (r"/api/v1/teams/(?P<team_id>[^/]+)/settings", TeamSettingsHandler),
]
