"""The notifier: turns score snapshots into email and Slack warnings a seller acts on."""
