"""Running code in a launched jupyter-server's kernel over its REST and websocket API, as a notebook does."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp


def _message(code: str, session: str) -> dict[str, Any]:
    msg_id = uuid.uuid4().hex
    header = {"msg_id": msg_id, "username": "attacker", "session": session, "msg_type": "execute_request",
              "version": "5.3", "date": ""}
    content = {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False,
               "stop_on_error": True}
    return {"header": header, "parent_header": {}, "metadata": {}, "content": content, "channel": "shell",
            "buffers": []}


async def run_code(url: str, token: str, code: str, timeout: float = 90.0) -> str:
    """Start a kernel, run ``code``, return everything it printed (stdout, stderr, tracebacks); stop the kernel."""
    headers = {"Authorization": f"token {token}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http:
        async with http.post(url + "api/kernels", headers=headers, json={"name": "python3"}) as resp:
            assert resp.status == 201, await resp.text()
            kernel = (await resp.json())["id"]
        try:
            return await asyncio.wait_for(_execute(http, url, token, kernel, code), timeout)
        finally:
            async with http.delete(url + f"api/kernels/{kernel}", headers=headers):
                pass


async def _execute(http: aiohttp.ClientSession, url: str, token: str, kernel: str, code: str) -> str:
    ws_url = url.replace("http", "ws", 1) + f"api/kernels/{kernel}/channels"
    async with http.ws_connect(ws_url, headers={"Authorization": f"token {token}"}) as ws:
        request = _message(code, uuid.uuid4().hex)
        await ws.send_json(request)
        printed: list[str] = []
        async for frame in ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                continue
            msg = frame.json()
            if msg.get("parent_header", {}).get("msg_id") != request["header"]["msg_id"]:
                continue
            kind, content = msg["header"]["msg_type"], msg["content"]
            if kind == "stream":
                printed.append(content["text"])
            elif kind == "error":
                printed.append("\n".join(content.get("traceback", [])) or content.get("evalue", ""))
            elif kind == "execute_reply":
                break
        return "".join(printed)
