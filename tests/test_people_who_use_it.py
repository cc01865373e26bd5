"""Smaller things a new user met (issue 21): what a wrong address says, and what the API document says it is."""

from __future__ import annotations

from cds_service import version


def test_get_of_an_unknown_service_is_404_and_of_a_known_one_405(client):
    unknown = client.get("/cds-services/no-such-service")
    assert unknown.status_code == 404
    assert "No CDS service at this path" in unknown.get_json()["issue"][0]["diagnostics"]
    known = client.get("/cds-services/lbp-referral-select")
    assert known.status_code == 405 and "POST" in known.headers["Allow"] and "GET" not in known.headers["Allow"]


def test_a_directory_region_that_does_not_exist_is_said_so_with_every_center_listed(client):
    every = client.get("/msc/directory").get_data(as_text=True)
    response = client.get("/msc/directory?region=nowhere")
    page = response.get_data(as_text=True)
    assert response.status_code == 404
    assert "There is no such region in this directory" in page
    assert page.count('class="center"') == every.count('class="center"') > 0
    assert "nowhere" not in page  # what was asked is not echoed


def test_a_directory_region_that_exists_lists_its_centers_only(client):
    every = client.get("/msc/directory").get_data(as_text=True)
    response = client.get("/msc/directory?region=twin-cities")
    assert response.status_code == 200
    assert "There is no such region" not in response.get_data(as_text=True)
    assert 0 < response.get_data(as_text=True).count('class="center"') < every.count('class="center"')


def test_the_served_api_document_is_versioned_with_the_package(client):
    assert client.get("/openapi.json").get_json()["info"]["version"] == version()
