"""The `charpente` subcommands, one module per concern; cli.main assembles them."""

__all__: list[str] = []
