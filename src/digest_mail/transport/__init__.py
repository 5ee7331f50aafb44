"""How bytes reach a relay: the Transport protocol and its errors, capture, one SMTP pool
over two kinds of connection, relay URLs and the factory, and the wire types (a leaf)."""
