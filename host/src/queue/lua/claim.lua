-- Claim up to ARGV[2] replies from the outbox list (left there by dead or
-- stopped workers) into the worker's own outbox hash, if the worker holds its
-- lease, for it to deliver — the same move as a fetch, so a mover that dies
-- is recovered by the reaper like any worker.
-- KEYS[1] outbox, KEYS[2] outbox hash of this worker, KEYS[3] workers;
-- ARGV[1] worker id, ARGV[2] max, ARGV[3] token prefix unique to this call.
-- Entry i becomes the field '<token prefix><i>:<reply_to>' with the record as
-- its value; an entry not of the form '<len>:<reply_to><record>' becomes
-- '<token prefix><i>:' with the whole entry as its value.
-- Returns {field, record, field, record, …} (possibly empty), or false when
-- the lease was lost.
if not holds_lease(KEYS[3], ARGV[1]) then return false end
local entries = redis.call('LPOP', KEYS[1], ARGV[2])
if not entries then return {} end
local out = {}
for i, entry in ipairs(entries) do
  local reply_to, record = '', entry
  local _, last, digits = string.find(entry, '^(%d+):')
  if last then
    local len = tonumber(digits)
    if len > 0 and last + len <= #entry then
      reply_to = string.sub(entry, last + 1, last + len)
      record = string.sub(entry, last + len + 1)
    end
  end
  local field = ARGV[3] .. i .. ':' .. reply_to
  redis.call('HSET', KEYS[2], field, record)
  out[#out + 1] = field
  out[#out + 1] = record
end
return out
