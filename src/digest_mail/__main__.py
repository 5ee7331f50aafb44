from digest_mail.cli import cli

cli(prog_name="digest-mail")
