"""The lean HTTP transport for OpenAI-compatible endpoints: aiohttp and orjson.

Measured on the 2-core dev machines (issue 2): the openai SDK on httpx costs
about 2.5-3 ms of client CPU per call, this transport about 0.3 ms, which is
what lets one process keep several GPU servers busy. The SDK stays the
reference for request and response shapes; this module only moves bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import aiohttp


class HttpTransport:
    """POSTs JSON bodies to one base URL over a pooled keep-alive connection set.

    The aiohttp session is created lazily inside the running event loop, since
    sessions are bound to the loop they were made in.
    """

    def __init__(self, base_url: str, api_key: str | None, *, max_connections: int = 256) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, limit_per_host=self._max_connections, ttl_dns_cache=300
            )
            # No session-wide timeout: each call passes its own deadline.
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=None),
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def post(self, path: str, body: bytes, *, timeout_s: float) -> tuple[int, Mapping[str, str], bytes]:
        """POST ``body`` to ``base_url + path``; returns status, headers and the raw body.

        Raises:
            asyncio.TimeoutError: the deadline passed.
            aiohttp.ClientError: the connection failed or dropped.
        """
        session = self._ensure_session()
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        async with session.post(self.base_url + path, data=body, timeout=timeout) as resp:
            data = await resp.read()
            return resp.status, resp.headers, data

    async def send(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        timeout_s: float | None = None,
        stall_s: float | None = None,
        moved: Callable[[], float] | None = None,
        root: bool = False,
    ) -> tuple[int, Mapping[str, str], bytes, float | None]:
        """Like :meth:`hyperteam.models._rawhttp.RawHttpTransport.send`; here any bytes count as
        progress (aiohttp's read timeout), and the time to the first data is not measured.

        Raises:
            TimeoutError: the deadline passed.
            Stalled: no bytes within ``stall_s``.
            aiohttp.ClientError: the connection failed or dropped.
        """
        from hyperteam.models._rawhttp import Stalled

        if root:
            raise ValueError("root paths are not probed over HTTPS")
        session = self._ensure_session()
        timeout = aiohttp.ClientTimeout(total=timeout_s, sock_read=stall_s)
        try:
            async with session.request(method, self.base_url + path, data=body or None, timeout=timeout) as resp:
                data = await resp.read()
                return resp.status, resp.headers, data, None
        except aiohttp.SocketTimeoutError:  # the read timeout: no bytes for stall_s
            raise Stalled(stall_s or 0.0) from None

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
