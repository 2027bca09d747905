"""GET /api/health/: answers without the database (load balancers; the benchmark's baseline)."""


def test_it_answers_ok_without_touching_the_database(client):
    # No `db` fixture: pytest-django blocks database access, so a query here would fail the test.
    response = client.get("/api/health/")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_it_only_reads(client):
    assert client.post("/api/health/").status_code == 405
