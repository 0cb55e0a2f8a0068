from signalbox.platform.http import redact_url


def test_redact_url_hides_secret_params():
    assert "s3cr3t" not in redact_url("http://x/y?apikey=s3cr3t&page=2")
