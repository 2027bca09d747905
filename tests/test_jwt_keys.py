"""accounts/keys.py: where token keys come from, their kid, and the errors a bad setup gets."""

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from accounts import keys


@pytest.fixture
def jwt_conf(settings):
    """Set JWT keys (and anything else) for one test: jwt_conf(SIGNING_KEY=..., ...)."""

    def configure(**changes):
        settings.JWT = {**settings.JWT, **changes}

    return configure


def test_the_session_keys_are_the_keyring(jwt_keys):
    keyring = keys.keyring()
    assert keyring.kid == jwt_keys.kid
    assert list(keyring.public_keys) == [jwt_keys.kid]
    assert keys.public_pem(jwt_keys.private_pem) == jwt_keys.public_pem


def test_several_public_keys_are_all_active(jwt_conf, jwt_keys):
    other = keys.public_pem(keys.private_key_generate("ES256"))
    jwt_conf(VERIFYING_KEY=f"{other}\n{jwt_keys.public_pem}")

    keyring = keys.keyring()

    assert len(keyring.public_keys) == 2
    assert keyring.kid == jwt_keys.kid
    assert keyring.kid in keyring.public_keys


@pytest.mark.parametrize(
    "signing, verifying, variable",
    [("", "", "JWT_PRIVATE_KEY"), ("", "public", "JWT_PRIVATE_KEY"), ("private", "", "JWT_PUBLIC_KEY")],
)
def test_without_debug_a_missing_key_is_an_error_naming_the_variable(jwt_conf, jwt_keys, signing, verifying, variable):
    pems = {"": "", "private": jwt_keys.private_pem, "public": jwt_keys.public_pem}
    jwt_conf(SIGNING_KEY=pems[signing], VERIFYING_KEY=pems[verifying])

    with pytest.raises(ImproperlyConfigured, match=f"{variable} \\(or {variable}_FILE\\) must be set"):
        keys.keyring()


def test_the_signing_key_must_be_among_the_public_keys(jwt_conf):
    jwt_conf(VERIFYING_KEY=keys.public_pem(keys.private_key_generate("ES256")))

    with pytest.raises(ImproperlyConfigured, match="JWT_PUBLIC_KEY must include the public half of JWT_PRIVATE_KEY"):
        keys.keyring()


def test_a_key_of_the_wrong_kind_for_the_algorithm_is_an_error(jwt_conf):
    rsa_private = keys.private_key_generate("RS256")
    jwt_conf(SIGNING_KEY=rsa_private, VERIFYING_KEY=keys.public_pem(rsa_private))  # ALGORITHM is still ES256

    with pytest.raises(ImproperlyConfigured, match="JWT_PRIVATE_KEY: JWT_ALGORITHM ES256 needs an EC P-256 key"):
        keys.keyring()


def test_an_algorithm_other_than_es256_or_rs256_is_an_error(jwt_conf):
    jwt_conf(ALGORITHM="HS256")

    with pytest.raises(ImproperlyConfigured, match="JWT_ALGORITHM must be one of ES256, RS256"):
        keys.keyring()


def test_garbage_instead_of_pem_is_an_error(jwt_conf, jwt_keys):
    jwt_conf(VERIFYING_KEY="not a key")
    with pytest.raises(ImproperlyConfigured, match="JWT_PUBLIC_KEY holds no PEM public key"):
        keys.keyring()

    jwt_conf(VERIFYING_KEY=jwt_keys.public_pem, SIGNING_KEY="not a key")
    with pytest.raises(ImproperlyConfigured, match="JWT_PRIVATE_KEY is not an unencrypted PEM private key"):
        keys.keyring()


def test_in_debug_without_keys_a_dev_key_pair_is_made_once_outside_the_repository(settings, jwt_conf, tmp_path):
    assert not Path(settings.JWT_DEV_KEY_DIR).resolve().is_relative_to(settings.BASE_DIR)  # the default
    settings.DEBUG = True
    settings.JWT_DEV_KEY_DIR = tmp_path / "dev-jwt"
    jwt_conf(SIGNING_KEY="", VERIFYING_KEY="")

    first = keys.keyring()
    private = tmp_path / "dev-jwt" / "es256-private.pem"
    assert private.exists()
    assert private.stat().st_mode & 0o077 == 0  # readable by its owner only
    assert (tmp_path / "dev-jwt" / "es256-public.pem").read_text() == keys.public_pem(private.read_text())

    keys.keyring.cache_clear()  # as a new process would
    assert keys.keyring().kid == first.kid  # the same key, not a new one
    assert sorted(p.name for p in (tmp_path / "dev-jwt").iterdir()) == ["es256-private.pem", "es256-public.pem"]


def test_without_debug_no_dev_key_is_made(settings, jwt_conf, tmp_path):
    settings.JWT_DEV_KEY_DIR = tmp_path / "dev-jwt"
    jwt_conf(SIGNING_KEY="", VERIFYING_KEY="")

    with pytest.raises(ImproperlyConfigured):
        keys.keyring()
    assert not (tmp_path / "dev-jwt").exists()


def test_keys_come_from_files_and_one_line_variables(monkeypatch, tmp_path, jwt_keys):
    from creditportal.settings import envpem

    (tmp_path / "public.pem").write_text(jwt_keys.public_pem)
    monkeypatch.delenv("JWT_PUBLIC_KEY", raising=False)
    monkeypatch.setenv("JWT_PUBLIC_KEY_FILE", str(tmp_path / "public.pem"))
    monkeypatch.setenv("JWT_PRIVATE_KEY", jwt_keys.private_pem.strip().replace("\n", "\\n"))

    assert envpem("JWT_PUBLIC_KEY") == jwt_keys.public_pem.strip()
    assert envpem("JWT_PRIVATE_KEY") == jwt_keys.private_pem.strip()
