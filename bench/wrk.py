"""wrk POSTing unique pre-signed bodies from a file, one request a line (`name\x02value[\x01name\x02value…]<TAB>body`):
no body is sent twice unless the file runs out (reported as `wrapped`). Shared by bench/webhook_ingest.py
and bench/vs_djstripe.py."""

import json
import os
import re
import subprocess
import tempfile

LUA = """
local bodies_file, path, stop_at_end = "%(file)s", "%(path)s", %(stop)s
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function init(args)
  lines, n, wrapped, answered = {}, 0, 0, 0
  local i = 0
  for line in io.lines(bodies_file) do
    if i %% %(threads)d == tid then
      local tab = line:find("\\t")
      local headers = {["Content-Type"] = "application/json"}
      for pair in line:sub(1, tab - 1):gmatch("[^\\1]+") do
        local sep = pair:find("\\2")
        headers[pair:sub(1, sep - 1)] = pair:sub(sep + 1)
      end
      lines[#lines + 1] = {headers, line:sub(tab + 1)}
    end
    i = i + 1
  end
end
function request()
  n = n + 1
  if n > #lines then n = 1; wrapped = wrapped + 1 end
  local e = lines[n]
  return wrk.format("POST", path, e[1], e[2])
end
function response(status, headers, body)
  answered = answered + 1
  if stop_at_end and answered >= #lines then wrk.thread:stop() end
end
function done(summary, latency, requests)
  local wrapped_total = 0
  for _, t in ipairs(threads) do wrapped_total = wrapped_total + t:get("wrapped") end
  io.write(string.format('RESULT {"requests": %%d, "seconds": %%f, "non2xx": %%d, "errors": %%d, '
    .. '"p50": %%f, "p99": %%f, "wrapped": %%d}\\n', summary.requests, summary.duration / 1e6,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout, latency:percentile(50) / 1000, latency:percentile(99) / 1000, wrapped_total))
end
"""


def write_bodies(requests) -> str:
    """(headers, body) pairs to a file for `post`; returns its name (the caller unlinks it). Compact JSON
    bodies hold no raw tab or newline."""
    fd, name = tempfile.mkstemp(suffix=".bodies", prefix="wrk-")
    with os.fdopen(fd, "wb") as f:
        for headers, body in requests:
            body = body.encode() if isinstance(body, str) else body
            assert b"\t" not in body and b"\n" not in body
            f.write("\x01".join(f"{k}\x02{v}" for k, v in headers.items()).encode() + b"\t" + body + b"\n")
    return name


def command(url: str, path: str, bodies: str, connections: int, seconds: int, *, stop: bool = False,
            threads: int = 2) -> tuple[list[str], str]:
    """The wrk command and its script's file (the caller unlinks it). `stop`: each thread stops once its
    share of the bodies is answered (wrk otherwise runs for `seconds` whatever its script says)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA % {"file": bodies, "path": path, "stop": "true" if stop else "false", "threads": threads})
    return ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "30s", "-s",
            f.name, url], f.name


def result(out: str) -> dict:
    """requests, req/s, p50/p99 (ms), non-2xx, socket errors, wraps, from the script's RESULT line."""
    found = json.loads(re.search(r"^RESULT (.*)$", out, re.M).group(1))
    found["rps"] = found["requests"] / found["seconds"]
    return found


def post(url: str, path: str, bodies: str, connections: int, seconds: int, *, stop: bool = False) -> dict:
    """POST for `seconds` at `connections` (or until every body is answered, with `stop`)."""
    cmd, script = command(url, path, bodies, connections, seconds, stop=stop)
    try:
        return result(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    finally:
        os.unlink(script)
