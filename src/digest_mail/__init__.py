"""digest-mail: the newsletter generator and mailer of Chrysanthemum Digest."""

from digest_mail.errors import DigestMailError

__all__ = ["DigestMailError", "__version__"]
__version__ = "0.1.0"
