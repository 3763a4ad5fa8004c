//! The two Lua scripts the sync thread runs in Redis: the quota lease (`LEASE_LUA`) and the
//! throttle demand exchange (`DEMAND_LUA`).

/// The quota lease script: KEYS = count, seen marker; ARGV = limit, want, expire_at_ms,
/// offset, add (signed: owed > 0, returned < 0), known (1: this host counted the key before,
/// never charge the offset), max block, remaining divisor. Returns `{grant, used}`;
/// `{0, -1}` when the period is over by Redis's clock.
pub(super) const LEASE_LUA: &str = r"
local limit = tonumber(ARGV[1])
local want = tonumber(ARGV[2])
local expire_at = tonumber(ARGV[3])
local offset = tonumber(ARGV[4])
local add = tonumber(ARGV[5])
local known = ARGV[6] == '1'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now >= expire_at then return {0, -1} end
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if redis.call('SET', KEYS[2], '1', 'NX') and not known then used = used + offset end
used = math.max(0, used + add)
local grant = 0
local remaining = limit - used
if remaining > 0 and want > 0 then
  grant = math.min(want, tonumber(ARGV[7]), math.max(1, math.floor(remaining / tonumber(ARGV[8]))), remaining)
end
used = used + grant
redis.call('SET', KEYS[1], string.format('%.0f', used))
redis.call('PEXPIREAT', KEYS[1], expire_at)
return {grant, used}
";

/// The demand script: ARGV = prefix, host id, ttl_ms, then (limit identity, smoothed demand)
/// pairs (`limit_ids`). Returns `{hosts, id, total, id, total, ...}` over the hosts seen
/// within ttl.
pub(super) const DEMAND_LUA: &str = r"
local prefix, host, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local hosts = prefix .. 'hosts'
redis.call('ZADD', hosts, now, host)
redis.call('ZREMRANGEBYSCORE', hosts, '-inf', now - ttl)
redis.call('PEXPIRE', hosts, ttl * 10)
local mine = prefix .. 'd:' .. host
redis.call('DEL', mine)
local i = 4
while i <= #ARGV do
  local j = math.min(i + 199, #ARGV)
  redis.call('HSET', mine, unpack(ARGV, i, j))
  i = j + 1
end
if #ARGV >= 4 then redis.call('PEXPIRE', mine, ttl) end
local members = redis.call('ZRANGE', hosts, 0, -1)
local totals, order = {}, {}
for _, h in ipairs(members) do
  local kv = redis.call('HGETALL', prefix .. 'd:' .. h)
  for k = 1, #kv, 2 do
    local f = kv[k]
    if totals[f] == nil then totals[f] = 0; order[#order + 1] = f end
    totals[f] = totals[f] + tonumber(kv[k + 1])
  end
end
local out = {tostring(#members)}
for _, f in ipairs(order) do
  out[#out + 1] = f
  out[#out + 1] = string.format('%.0f', totals[f])
end
return out
";
