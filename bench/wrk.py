"""wrk POSTing unique pre-signed bodies from a file, one `header-value<TAB>body` line per request (as
bench/webhook_ingest.py does it): no body is sent twice unless the file runs out (reported as `wrapped`)."""

import json
import os
import re
import subprocess
import tempfile

LUA = """
local bodies_file, path, header = "%(file)s", "%(path)s", "%(header)s"
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function init(args)
  lines, n, wrapped = {}, 0, 0
  local i = 0
  for line in io.lines(bodies_file) do
    if i %% %(threads)d == tid then
      local tab = line:find("\\t")
      lines[#lines + 1] = {line:sub(1, tab - 1), line:sub(tab + 1)}
    end
    i = i + 1
  end
end
function request()
  n = n + 1
  if n > #lines then n = 1; wrapped = wrapped + 1 end
  local e = lines[n]
  return wrk.format("POST", path, {[header] = e[1], ["Content-Type"] = "application/json"}, e[2])
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


def write_bodies(lines) -> str:
    """(header value, body) pairs to a file for `post`; returns its name (the caller unlinks it)."""
    fd, name = tempfile.mkstemp(suffix=".bodies", prefix="wrk-")
    with os.fdopen(fd, "w") as f:
        for value, body in lines:
            f.write(f"{value}\t{body}\n")
    return name


def post(url: str, path: str, header: str, bodies: str, connections: int, seconds: int, threads: int = 2) -> dict:
    """POST for `seconds` at `connections`: requests, req/s, p50/p99 (ms), non-2xx, socket errors, wraps."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA % {"file": bodies, "path": path, "header": header, "threads": threads})
    try:
        out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout",
                              "30s", "-s", f.name, url], capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(f.name)
    result = json.loads(re.search(r"^RESULT (.*)$", out, re.M).group(1))
    result["rps"] = result["requests"] / result["seconds"]
    return result
