import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_authorizer_imports_no_django():
    # A fresh interpreter: this test process has Django loaded by pytest-django.
    code = "import sys, authorizer; print(sorted(m for m in sys.modules if m.split('.')[0] in {'django', 'rest_framework', 'accounts', 'ledger', 'creditportal'}))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
