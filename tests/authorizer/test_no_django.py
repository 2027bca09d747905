import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = {"django", "rest_framework", "accounts", "ledger", "creditportal", "tests"}


@pytest.mark.parametrize("module", ["authorizer", "authorizer.handler"])
def test_importing_the_authorizer_imports_no_django(module):
    # A fresh interpreter: this test process has Django loaded by pytest-django.
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.split('.')[0] in {OURS!r}))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_handler_does_not_load_boto3_or_s3transfer():
    code = (
        "import sys, authorizer.handler; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'boto3', 's3transfer'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
