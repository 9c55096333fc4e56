"""Production behind a TLS proxy (issue 17, item 1): the documented environment makes
`manage.py check --deploy` clean, and the HTTPS switch redirects plain HTTP — except the health
check and Twilio's webhooks — while trusting the proxy's X-Forwarded-Proto."""
import os
import secrets
import subprocess
import sys

from django.conf import settings

# The production environment docs/deploy.md and the README document (with a real secret key).
PRODUCTION = {
    "SECRET_KEY": secrets.token_urlsafe(60),
    "DEBUG": "false",
    "ALLOWED_HOSTS": "sms.example.com",
    "PUBLIC_BASE_URL": "https://sms.example.com",
    "HTTPS": "true",
}


def manage(*args, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE", "HTTPS"}}
    environ.update(DJANGO_SETTINGS_MODULE="portal.settings", **env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=settings.BASE_DIR, env=environ, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_is_clean_with_the_documented_production_environment():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_without_the_https_switch_check_deploy_warns():
    result = manage("check", "--deploy", **{**PRODUCTION, "HTTPS": "false"})

    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr + result.stdout


def test_plain_http_is_redirected_but_the_health_check_and_twilio_are_not(tmp_path):
    probe = (
        "from django.test import Client; c = Client(); "
        "print(c.get('/admin/', HTTP_HOST='sms.example.com').status_code, "
        "c.get('/healthz', HTTP_HOST='sms.example.com').status_code, "
        "c.post('/sms/twilio/inbound/', {}, HTTP_HOST='sms.example.com').status_code, "
        "c.get('/admin/', HTTP_HOST='sms.example.com', HTTP_X_FORWARDED_PROTO='https').status_code)"
    )

    result = manage("shell", "-c", probe, **PRODUCTION, TERN_VAR_DIR=str(tmp_path))

    redirected, health, twilio, behind_proxy = result.stdout.split()[-4:]
    assert redirected == "301"  # to https://
    assert health in {"200", "503"} and twilio == "403"  # answered, not redirected (bad signature: 403)
    assert behind_proxy == "302"  # through the proxy: the admin's own redirect to its login
