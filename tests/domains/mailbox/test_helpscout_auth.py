"""The client-credentials token: fetched once, reused, refreshed a minute before it
expires (on a clock the test drives)."""

from clocks import FakeClock

from signalbox.domains.mailbox.helpscout import SOURCE, HelpScoutAuth
from signalbox.platform.http import HttpClient


def test_token_is_reused_then_refreshed_a_minute_before_it_expires(helpscout_sim):
    clock = FakeClock()
    auth = HelpScoutAuth(helpscout_sim.client_id, helpscout_sim.client_secret, clock=clock)
    with HttpClient(helpscout_sim.url, SOURCE, auth=auth) as client:

        def token_requests() -> int:
            return sum(1 for r in helpscout_sim.requests if r.path == "/v2/oauth2/token")

        client.get_json("/v2/mailboxes")
        client.get_json("/v2/mailboxes")
        assert token_requests() == 1
        clock.advance(helpscout_sim.token_ttl_seconds - 61)
        client.get_json("/v2/mailboxes")
        assert token_requests() == 1
        clock.advance(2)  # now within the last minute of the token's life
        client.get_json("/v2/mailboxes")
        assert token_requests() == 2
