-- Register a worker lease.
-- KEYS[1] workers hash; ARGV[1] worker id, ARGV[2] lease ms.
-- Returns the lease expiry (Unix ms, server clock).
local expiry = now_ms() + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], expiry)
return expiry
