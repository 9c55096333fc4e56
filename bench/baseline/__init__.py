"""The machine's own limit for the inbound webhook (issue 10): a minimal Django + daphne webhook
that checks the Twilio signature, inserts the text with a unique MessageSid and answers
`<Response/>`. `bench/inbound.py --vs-baseline` runs it beside Tern in one invocation."""
