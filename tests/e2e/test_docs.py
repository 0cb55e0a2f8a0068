"""`signalbox docs` serves the generated dbt docs site on loopback, a browser renders a
model's page and its lineage graph, and SIGTERM (what a process manager or `docker stop`
sends) stops it with every server it started."""

from __future__ import annotations

import signal

import requests

from signalbox.platform.embedded.ports import free_port


def test_docs_site_serves_every_project(run_cli, checked_page):
    port = free_port()
    docs = run_cli("docs", "--port", str(port), stop_signal=signal.SIGTERM)
    docs.wait_for(f"dbt docs: http://127.0.0.1:{port}", timeout=240)
    base = f"http://127.0.0.1:{port}"
    index = requests.get(base, timeout=10).text
    assert 'href="warehouse/index.html"' in index and 'href="activity/index.html"' in index
    page = requests.get(f"{base}/warehouse/index.html", timeout=10)
    assert page.ok and "dbt" in page.text.lower()
    manifest = requests.get(f"{base}/warehouse/manifest.json", timeout=10).json()
    model = manifest["nodes"]["model.signalbox_warehouse.fct_helpscout__conversations"]
    assert model["description"] and model["columns"]["first_response_business_minutes"]
    assert requests.get(f"{base}/warehouse/catalog.json", timeout=10).ok
    activity = requests.get(f"{base}/activity/manifest.json", timeout=10).json()
    assert "model.signalbox_activity.activity_daily_dimensions" in activity["nodes"]

    # in a browser: a model's page, then its lineage graph, drawn from the manifest
    page = checked_page.page
    # dbt-docs' own bundle asks for two unrendered template URLs (icons, favicon): 404s
    checked_page.allow(r"%7B%7B%20getIcon|%7Brequire\(", "dbt-docs requests unrendered URLs")
    model = "model.signalbox_warehouse.fct_helpscout__conversations"
    page.goto(f"{base}/warehouse/index.html#!/model/{model}", wait_until="networkidle")
    page.wait_for_selector("h1 >> text=fct_helpscout__conversations")
    assert "first-response time" in page.inner_text("body")
    checked_page.timed("-model")
    checked_page.screenshot("-model")
    page.click('[title="View Lineage Graph"]')
    page.wait_for_function("() => document.querySelector('#cy')?._cyreg?.cy.nodes().length > 3")
    nodes = page.evaluate("() => document.querySelector('#cy')._cyreg.cy.nodes().map(n => n.id())")
    assert model in nodes and "model.signalbox_warehouse.stg_helpscout__conversations" in nodes
    page.wait_for_timeout(1000)  # the graph's layout settles
    checked_page.timed("-lineage")
    checked_page.screenshot("-lineage")
