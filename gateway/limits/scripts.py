"""The limiter's Lua scripts. Each check runs as one script, so the read and the write
are one atomic step (no check-then-increment race between gateway replicas).

Every key of one API key shares the hash tag ``{<key id>}``, so the scripts also run on
Redis Cluster (all their keys live in one slot).

Requests and tokens are token buckets refilled continuously over a minute (capacity =
the per-minute limit, stored as a hash ``{t: level, ts: ms}``); concurrency is a sorted
set of request slots scored by when their lease ends (slots of a crashed gateway expire);
the budget is a counter per period.
"""

from __future__ import annotations

# KEYS: requests bucket, tokens bucket, slots, budget counter, answer-owner record
# ARGV: now_ms, rpm, tpm, max_parallel, budget, tokens needed, slot id, lease_ms, budget reset ms,
#       owner record ttl s (0: no record)
# -> {refused ('' | 'requests' | 'tokens' | 'concurrency' | 'budget'), retry_ms,
#     requests left, tokens left, in flight, budget used}
ADMIT = """
local now = tonumber(ARGV[1])
local rpm, tpm = tonumber(ARGV[2]), tonumber(ARGV[3])
local par, budget = tonumber(ARGV[4]), tonumber(ARGV[5])
local need = tonumber(ARGV[6])
local function level(key, cap)
  local v = redis.call('HMGET', key, 't', 'ts')
  local t, ts = tonumber(v[1]), tonumber(v[2])
  if not t then return cap end
  return math.min(cap, t + math.max(0, now - ts) * cap / 60000)
end
local req = 0
local tok = 0
if rpm > 0 then req = level(KEYS[1], rpm) end
if tpm > 0 then tok = level(KEYS[2], tpm) end
local inflight = 0
if par > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  inflight = redis.call('ZCARD', KEYS[3])
end
local used = 0
if budget > 0 then used = tonumber(redis.call('GET', KEYS[4]) or '0') end
local refused, wait = '', 0
if rpm > 0 and req < 1 then
  refused, wait = 'requests', math.ceil((1 - req) * 60000 / rpm)
elseif tpm > 0 and tok < need then
  refused = 'tokens'
  if need > tpm then wait = -1 else wait = math.ceil((need - tok) * 60000 / tpm) end
elseif par > 0 and inflight >= par then
  refused, wait = 'concurrency', 1000
elseif budget > 0 and used >= budget then
  refused, wait = 'budget', tonumber(ARGV[9])
end
if refused == '' then
  if rpm > 0 then
    req = req - 1
    redis.call('HSET', KEYS[1], 't', req, 'ts', now)
    redis.call('PEXPIRE', KEYS[1], 120000)
  end
  if tpm > 0 and need > 0 then
    tok = tok - need
    redis.call('HSET', KEYS[2], 't', tok, 'ts', now)
    redis.call('PEXPIRE', KEYS[2], 120000)
  end
  if par > 0 then
    redis.call('ZADD', KEYS[3], now + tonumber(ARGV[8]), ARGV[7])
    redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[8]))
    inflight = inflight + 1
  end
  if tonumber(ARGV[10]) > 0 then redis.call('SET', KEYS[5], '1', 'EX', tonumber(ARGV[10])) end
end
return {refused, wait, tostring(req), tostring(tok), inflight, used}
"""

# KEYS: tokens bucket, slots, budget counter
# ARGV: now_ms, tpm, tokens reserved, tokens used, slot id ('' for none), budget ttl s (0: no budget)
# -> tokens left (string)
SETTLE = """
local now = tonumber(ARGV[1])
local tpm = tonumber(ARGV[2])
local reserved, used = tonumber(ARGV[3]), tonumber(ARGV[4])
if ARGV[5] ~= '' then redis.call('ZREM', KEYS[2], ARGV[5]) end
local tok = 0
if tpm > 0 and reserved ~= used then
  local v = redis.call('HMGET', KEYS[1], 't', 'ts')
  local t, ts = tonumber(v[1]), tonumber(v[2])
  if t then
    tok = math.min(tpm, t + math.max(0, now - ts) * tpm / 60000 + reserved - used)
    redis.call('HSET', KEYS[1], 't', tok, 'ts', now)
    redis.call('PEXPIRE', KEYS[1], 120000)
  end
end
local ttl = tonumber(ARGV[6])
if ttl > 0 and used > 0 then
  redis.call('INCRBY', KEYS[3], used)
  redis.call('EXPIRE', KEYS[3], ttl)
end
return tostring(tok)
"""
