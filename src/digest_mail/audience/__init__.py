"""Who receives it: addresses, subscriber lists and their editing, unsubscribe and bounces."""
