"""The editor's look before sending: check, preview screenshots and the live view."""
