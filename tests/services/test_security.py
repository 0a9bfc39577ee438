"""Personal-data cryptography, settings that refuse unsafe production configs, and log scrubbing."""

from __future__ import annotations

import base64
import json
import logging

import pytest
from cryptography.exceptions import InvalidTag

from config.settings import DEV_JWT_SECRET, Settings, SettingsError, load_settings
from server.logs import JsonFormatter, scrub
from server.security import FieldCipher, mask_phone, normalise_mainland_mobile


def key(seed: str) -> str:
    return base64.b64encode(seed.encode().ljust(32, b"!")[:32]).decode()


def test_settings(**overrides) -> Settings:
    return Settings(**{"env": "test", **overrides})


test_settings.__test__ = False  # a helper, not a test


# ---------------------------------------------------------------- phones
@pytest.mark.parametrize(
    "raw, expected",
    [
        ("+86 138-0013-8000", "13800138000"),
        ("13800138000", "13800138000"),
        ("8613800138000", "13800138000"),
        ("0086 138 0013 8000", "13800138000"),
        ("(+86) 19912345678", "19912345678"),
        ("+86 (199) 1234-5678", "19912345678"),
        ("12800138000", None),  # no mobile network starts with 12
        ("1380013800", None),  # 10 digits
        ("138001380001", None),  # 12 digits
        ("+852 9123 4567", None),  # Hong Kong, not mainland
        ("138-0013-800a", None),
        ("", None),
        ("010-12345678", None),  # a landline
    ],
)
def test_normalise_mainland_mobile(raw, expected):
    assert normalise_mainland_mobile(raw) == expected


def test_mask_phone():
    assert mask_phone("13800138000") == "138****8000"


# ---------------------------------------------------------------- field encryption
def test_field_cipher_round_trip_and_fresh_nonce():
    cipher = FieldCipher(test_settings())
    a = cipher.encrypt("13800138000", "doc-1")
    b = cipher.encrypt("13800138000", "doc-1")
    assert cipher.decrypt(a, "doc-1") == "13800138000"
    assert cipher.decrypt(b, "doc-1") == "13800138000"
    assert a["n"] != b["n"] and a["c"] != b["c"], "each value gets a fresh nonce"
    assert "13800138000" not in json.dumps([a, b])
    assert a["v"] == 1


def test_decrypt_with_another_document_id_fails():
    cipher = FieldCipher(test_settings())
    sealed = cipher.encrypt("13800138000", "lead-A")
    with pytest.raises(InvalidTag):
        cipher.decrypt(sealed, "lead-B")


def test_tampered_ciphertext_fails():
    cipher = FieldCipher(test_settings())
    sealed = cipher.encrypt("13800138000", "doc")
    raw = bytearray(base64.b64decode(sealed["c"]))
    raw[0] ^= 1
    with pytest.raises(InvalidTag):
        cipher.decrypt({**sealed, "c": base64.b64encode(bytes(raw)).decode()}, "doc")


def test_blind_index_matches_after_normalisation():
    cipher = FieldCipher(test_settings())
    one = cipher.blind_index(normalise_mainland_mobile("+86 138-0013-8000"))
    two = cipher.blind_index(normalise_mainland_mobile("13800138000"))
    assert one == two
    assert one != cipher.blind_index(normalise_mainland_mobile("13800138001"))
    assert one != cipher.blind_index("13800138000", purpose="id_number"), "purposes do not collide"
    assert "13800138000" not in one
    other_key = FieldCipher(test_settings(blind_index_key=key("another blind key")))
    assert other_key.blind_index("13800138000") != one, "the index depends on its own key"


def test_old_key_version_still_decrypts_after_rotation():
    old = test_settings(field_key=key("key one"), field_key_version=1)
    sealed_v1 = FieldCipher(old).encrypt("13800138000", "doc")
    rotated = test_settings(field_key=key("key two"), field_key_version=2, field_old_keys={"1": key("key one")})
    cipher = FieldCipher(rotated)
    assert cipher.decrypt(sealed_v1, "doc") == "13800138000"
    sealed_v2 = cipher.encrypt("13800138000", "doc")
    assert sealed_v2["v"] == 2 and cipher.decrypt(sealed_v2, "doc") == "13800138000"
    # a server that never got the new key cannot read v2; one that dropped the old key cannot read v1
    with pytest.raises(KeyError):
        FieldCipher(old).decrypt(sealed_v2, "doc")
    with pytest.raises(KeyError):
        FieldCipher(test_settings(field_key=key("key two"), field_key_version=2)).decrypt(sealed_v1, "doc")


def test_field_key_must_be_32_bytes_of_base64():
    with pytest.raises(ValueError):
        test_settings(field_key=base64.b64encode(b"short").decode())
    with pytest.raises(ValueError):
        test_settings(field_key="not base64 at all!")


# ---------------------------------------------------------------- settings
STRONG = dict(
    jwt_secret="a-production-jwt-secret-that-is-long-0123",
    field_key=key("prod field key"),
    blind_index_key=key("prod blind index key"),
    wechat_secret="prod-wechat-secret",
)


def test_production_refuses_default_secrets():
    with pytest.raises(SettingsError) as caught:
        load_settings(env="production")
    message = str(caught.value)
    for name in ("MPCRM_JWT_SECRET", "MPCRM_FIELD_KEY", "MPCRM_BLIND_INDEX_KEY", "MPCRM_WECHAT_SECRET"):
        assert name in message
    assert "\n" not in message and "pydantic" not in message, message
    # building the model directly refuses too
    with pytest.raises(ValueError, match="MPCRM_JWT_SECRET"):
        Settings(env="production")


def test_other_bad_settings_are_settings_errors_naming_the_variable():
    with pytest.raises(SettingsError, match="MPCRM_TIMEZONE"):
        load_settings(env="test", timezone="Mars/Olympus")
    with pytest.raises(SettingsError, match="MPCRM_PORT"):
        load_settings(env="test", port=70000)


@pytest.mark.parametrize("name", sorted(STRONG))
def test_production_refuses_any_single_default_secret(name):
    values = {**STRONG}
    values.pop(name)
    with pytest.raises(SettingsError, match=f"MPCRM_{name.upper()}"):
        load_settings(env="production", **values)


def test_production_refuses_short_jwt_secret():
    with pytest.raises(SettingsError, match="MPCRM_JWT_SECRET"):
        load_settings(env="production", **{**STRONG, "jwt_secret": "short-but-not-default"})


def test_production_accepts_real_secrets_and_dev_keeps_defaults():
    assert load_settings(env="production", **STRONG).env == "production"
    assert test_settings().jwt_secret.get_secret_value() == DEV_JWT_SECRET


# ---------------------------------------------------------------- logs
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFr1j4Z2K8Q"


def _format(msg: str, *args, **extra) -> str:
    record = logging.makeLogRecord({"name": "mpcrm.test", "levelno": logging.INFO, "levelname": "INFO", "msg": msg, "args": args, **extra})
    return JsonFormatter().format(record)


def test_json_log_masks_phones_tokens_and_jwts():
    line = _format(
        "lead from %s, Authorization: Bearer %s, token %s, refresh %s",
        "13800138000", "abc.def-ghi", JWT, "rt_" + "Z" * 43,
        phone="+86 139-1234-5678 / 13912345678", header=f"Bearer {JWT}",
    )
    entry = json.loads(line)
    assert entry["level"] == "info" and entry["logger"] == "mpcrm.test"
    for secret in ("13800138000", "abc.def-ghi", JWT, "Z" * 43, "13912345678"):
        assert secret not in line, secret
    assert "138****8000" in line and "139****5678" in line
    assert "eyJhbGciOiJIUzI1NiJ9" not in line


def test_scrub_masks_secret_fields():
    text = scrub('{"session_key": "tiihtNczf5v6AKRyjwEUhQ==", "secret": "s3cr3t", "password": "hunter22"} ?js_code=0a1b2c&secret=xyz')
    for secret in ("tiihtNczf5v6AKRyjwEUhQ==", "s3cr3t", "hunter22", "0a1b2c", "xyz"):
        assert secret not in text, secret


def test_scrub_leaves_ordinary_numbers_alone():
    assert scrub("order 2026112312345 amount_fen 100000") == "order 2026112312345 amount_fen 100000"


@pytest.mark.parametrize("text, expected", [
    ("13800138000", "138****8000"),
    ("tel:13800138000,", "tel:138****8000,"),
    ("电话13800138000。", "电话138****8000。"),
    ("a13800138000b 19912345678", "a138****8000b 199****5678"),
    ("213800138000", "213800138000"),  # part of a longer number
    ("138001380001", "138001380001"),
    ("12800138000", "12800138000"),  # not a mobile prefix
    ("٣13800138000", "٣13800138000"),  # next to a digit of another script
    ("1113800138000", "1113800138000"),
    ("11 13800138000", "11 138****8000"),
])
def test_scrub_masks_a_mobile_number_only_where_it_stands_alone(text, expected):
    assert scrub(text) == expected


def test_scrub_masks_secret_fields_in_any_case_the_patterns_accept():
    """``scrub`` skips a pattern when the line cannot hold its words; the skip must never let
    through a spelling the case-insensitive pattern itself would have masked."""
    for text in ('{"PASSWORD": "hunter22"}', "SESSİON_KEY=tiihtNczf5v6AKRyjwEUhQ", "sessıon_key: abc123", "ſecret=s3cr3t",
                 "Bind_Code=XR3LFB65AP", "authorization: BEARER abc.def.ghi"):
        masked = scrub(text)
        assert "***" in masked, text
        for secret in ("hunter22", "tiihtNczf5v6AKRyjwEUhQ", "abc123", "s3cr3t", "XR3LFB65AP", "abc.def.ghi"):
            assert secret not in masked, (text, masked)
