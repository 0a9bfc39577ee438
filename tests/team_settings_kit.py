"""Team settings for tests, set through the owning service (UserService.update_team_settings)
exactly as PATCH /teams/{id}/settings does: validated whole, versioned, audited."""

from __future__ import annotations

from conftest import TEST_ADMIN
from server.schemas.team_settings import TeamSettingsPatch


async def set_team_settings(ctx, team_id: str, **groups) -> dict:
    """``set_team_settings(ctx, team, churn={"days": 30})``: the team's settings after the change."""
    current = await ctx.users.get_team_settings(TEST_ADMIN, team_id)
    return await ctx.users.update_team_settings(TEST_ADMIN, team_id, TeamSettingsPatch.model_validate(groups), current["version"])
