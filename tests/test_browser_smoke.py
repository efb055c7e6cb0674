"""The browser harness itself: a local page loads, an external request is caught."""

from pathlib import Path


def test_offline_page_blocks_network(offline_page, tmp_path: Path) -> None:
    html = tmp_path / "p.html"
    html.write_text('<html><body><p id="x">hi</p><img src="https://example.org/a.png"></body></html>')
    offline_page.goto(html.as_uri())
    assert offline_page.inner_text("#x") == "hi"
    assert offline_page.external_requests == ["https://example.org/a.png"]
