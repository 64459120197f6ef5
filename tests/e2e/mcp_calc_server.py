"""A real MCP server (the official MCP Python SDK) for the agent tool tests.

Usage: mcp_calc_server.py PORT {streamable-http|sse}. Serves `add(a, b)`, `fail()` (a tool
error) and `whoami()` (echoes the Authorization header the server received).
"""

from __future__ import annotations

import sys

from mcp.server.fastmcp import Context, FastMCP


def main() -> None:
    port, transport = int(sys.argv[1]), sys.argv[2]
    server = FastMCP("calc", host="127.0.0.1", port=port, log_level="WARNING")

    @server.tool()
    def add(a: int, b: int) -> str:
        """Add two integers."""
        return str(a + b)

    @server.tool()
    def fail() -> str:
        """Always fails."""
        raise ValueError("the calculator is broken")

    @server.tool()
    def whoami(ctx: Context) -> str:
        """The Authorization header of the request."""
        request = ctx.request_context.request
        return request.headers.get("authorization", "(none)") if request else "(no request)"

    server.run(transport=transport)


if __name__ == "__main__":
    main()
