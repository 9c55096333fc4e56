"""Calls and the SMS beside them (SPEC B1 wait-time SMS, B2 in-call SMS, B3 app links), one module
per thing acted on:

- `lifecycle`: a call enters a queue, reaches an agent, ends (its own transition table);
- `consent`: the wait-time SMS consent prompt and the estimated wait;
- `sms_side`: the chat between the caller and an in-call SMS number;
- `in_call_sms`: in-call SMS and app links, by the agent on the call;
- `rules`: the queue's overrides, the texts and prompts, whether a caller can be texted;
- `voice` (Twilio Voice webhooks), `ivr_api` (any other IVR, JSON), `agent_api` (the agent's
  call actions), `urls`.

Twilio Voice and the IVR API both drive the same functions, so the rules live in one place."""
