"""A form's mini-program code (GET /forms/{id}/qrcode): the image WeChat's wxacode.getUnlimited
draws for the form page, with the scene the page reads (``<slug>`` or ``<slug>~<referrer>``).
The fake WeChat writes the scene, page and build into the PNG and records each call."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from capture_kit import create_form
from miniprogram_stub.wechat_api import PATH_WXACODE_UNLIMITED, Fault

pytestmark = pytest.mark.gen_test

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def settings_overrides(request):
    return getattr(request, "param", {})


def _code(r) -> Image.Image:
    assert r.status == 200, r.body
    assert r.headers["Content-Type"] == "image/png" and r.body.startswith(PNG)
    image = Image.open(io.BytesIO(r.body))
    image.load()
    return image


async def _short_form(api, people, slug="expo26"):
    """A form whose slug leaves room for a referrer in the 32-character scene."""
    admin = await people.admin()
    return admin, await create_form(api, admin, await people.team(), slug=slug)


async def test_an_admin_gets_the_code_of_the_form_page_with_the_slug_as_scene(api, form, people, wechat):
    state, _ = wechat
    admin = await people.admin()
    image = _code(await api.get(f"/api/v1/forms/{form['id']}/qrcode?width=300", token=admin.token))
    assert image.size == (300, 300)
    assert image.text["scene"] == "expo-2026"  # what WeChat drew: a code that opens the form
    seen = state.wxacodes[-1]
    assert (seen["scene"], seen["page"], seen["env_version"], seen["check_path"], seen["width"]) == ("expo-2026", "pages/form/form", "release", True, 300)


async def test_a_referrer_makes_slug_tilde_ref_and_a_repeat_is_served_without_asking_wechat(api, people, wechat):
    state, _ = wechat
    _, form = await _short_form(api, people)
    manager, rep = await people.manager(), await people.rep()
    path = f"/api/v1/forms/{form['id']}/qrcode?ref={rep.id}"
    image = _code(await api.get(path, token=manager.token))
    assert image.text["scene"] == f"expo26~{rep.id}" and image.size == (430, 430)
    again = await api.get(path, token=manager.token)
    assert again.status == 200 and again.body == (await api.get(path, token=manager.token)).body
    assert [c["scene"] for c in state.wxacodes] == [f"expo26~{rep.id}"]  # drawn once


async def test_a_scene_over_32_characters_is_422_naming_ref_and_wechat_is_not_asked(api, form, people, wechat):
    state, _ = wechat
    admin, rep = await people.admin(), await people.rep()
    r = await api.get(f"/api/v1/forms/{form['id']}/qrcode?ref={rep.id}", token=admin.token, headers={"Accept-Language": "en"})
    assert (r.status, r.error_code) == (422, "form.qrcode_scene_too_long"), r.body
    [problem] = r.json["error"]["details"]
    assert problem["field"] == "ref" and "at most 7" in problem["message"]
    assert state.wxacodes == []


async def test_a_rep_gets_a_code_crediting_themselves_and_no_one_else(api, people, wechat):
    state, _ = wechat
    _, form = await _short_form(api, people)
    rep, other = await people.rep(), await people.rep()
    assert _code(await api.get(f"/api/v1/forms/{form['id']}/qrcode", token=rep.token)).text["scene"] == f"expo26~{rep.id}"
    r = await api.get(f"/api/v1/forms/{form['id']}/qrcode?ref={other.id}", token=rep.token)
    assert (r.status, r.error_code) == (403, "form.qrcode_own_referrer")
    assert len(state.wxacodes) == 1


async def test_another_teams_staff_get_404_and_cannot_be_credited(api, people, wechat):
    state, _ = wechat
    admin, form = await _short_form(api, people)
    outsider_manager, outsider_rep = await people.manager(team="华南销售部"), await people.rep(team="华南销售部")
    for who in (outsider_manager, outsider_rep):
        r = await api.get(f"/api/v1/forms/{form['id']}/qrcode", token=who.token)
        assert (r.status, r.error_code) == (404, "form.not_found")
    r = await api.get(f"/api/v1/forms/{form['id']}/qrcode?ref={outsider_rep.id}", token=admin.token)
    assert (r.status, r.error_code) == (422, "form.bad_referrer")
    assert r.json["error"]["details"][0]["field"] == "ref"
    assert state.wxacodes == []


async def test_bad_input_and_an_inactive_form(api, form, people):
    admin = await people.admin()
    for query in ("width=279", "width=1281", "ref=nobody", "colour=red"):
        r = await api.get(f"/api/v1/forms/{form['id']}/qrcode?{query}", token=admin.token)
        assert r.status in (400, 422) and r.error_code.startswith("request."), (query, r.body)
    r = await api.patch(f"/api/v1/forms/{form['id']}", json={"active": False, "version": form["version"]}, token=admin.token)
    assert r.status == 200, r.body
    r = await api.get(f"/api/v1/forms/{form['id']}/qrcode", token=admin.token)
    assert (r.status, r.error_code) == (409, "form.inactive")


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        (Fault(path=PATH_WXACODE_UNLIMITED, errcode=41030), 502, "wechat.qrcode_page_invalid"),
        (Fault(path=PATH_WXACODE_UNLIMITED, errcode=40097), 502, "wechat.qrcode_refused"),
        (Fault(path=PATH_WXACODE_UNLIMITED, errcode=45009), 503, "wechat.rate_limited"),
        (Fault(path=PATH_WXACODE_UNLIMITED, errcode=-1), 503, "wechat.unavailable"),
        (Fault(path=PATH_WXACODE_UNLIMITED, malformed=True), 503, "wechat.unavailable"),
        (Fault(path=PATH_WXACODE_UNLIMITED, status=502), 503, "wechat.unavailable"),
    ],
    ids=["41030", "40097", "45009", "system-busy", "malformed", "http-502"],
)
async def test_a_wechat_failure_is_a_clear_502_or_503_and_nothing_is_cached(api, form, people, wechat, fault, status, code):
    state, _ = wechat
    admin = await people.admin()
    state.add_fault(fault)
    r = await api.get(f"/api/v1/forms/{form['id']}/qrcode", token=admin.token)
    assert (r.status, r.error_code) == (status, code), r.body
    assert r.headers["Content-Type"].startswith("application/json") and r.json["error"]["message"]
    _code(await api.get(f"/api/v1/forms/{form['id']}/qrcode", token=admin.token))  # asked again, drawn now
    assert len(state.wxacodes) == 1


async def test_an_expired_access_token_is_refreshed_once(api, form, people, wechat):
    state, _ = wechat
    admin = await people.admin()
    _code(await api.get(f"/api/v1/forms/{form['id']}/qrcode?width=280", token=admin.token))
    state.expire_access_tokens()
    _code(await api.get(f"/api/v1/forms/{form['id']}/qrcode?width=281", token=admin.token))
    assert [c["width"] for c in state.wxacodes] == [280, 281]


@pytest.mark.parametrize(
    ("settings_overrides", "env_version"),
    [({"wechat_miniprogram_state": "developer"}, "develop"), ({"wechat_miniprogram_state": "trial"}, "trial")],
    indirect=["settings_overrides"],
)
async def test_the_code_opens_the_build_the_server_sends_messages_to(api, form, people, wechat, env_version):
    state, _ = wechat
    admin = await people.admin()
    assert _code(await api.get(f"/api/v1/forms/{form['id']}/qrcode", token=admin.token)).text["env_version"] == env_version
    assert (state.wxacodes[-1]["env_version"], state.wxacodes[-1]["check_path"]) == (env_version, False)
