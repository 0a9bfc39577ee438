import pytest

@pytest.mark.gen_test
async def test_me(api, people, recorder):
    rep = await people.rep()
    with recorder.counting() as cmds:
        r = await api.get("/api/v1/me", token=rep.token)
    assert r.status == 200, r.body
    assert r.json["role"] == "rep"
    assert len(cmds) <= 1, cmds
