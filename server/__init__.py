"""respd's server: trio networking, commands, keyspace, configuration and CLI."""
