"""How bytes reach a relay: the Transport protocol, the SMTP client and its pool, capture."""
