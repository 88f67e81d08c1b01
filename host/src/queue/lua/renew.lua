-- Renew a worker lease if it is still held (fencing: an expired lease is
-- never revived, its in-flight tasks may already run elsewhere).
-- KEYS[1] workers hash; ARGV[1] worker id, ARGV[2] lease ms.
-- Returns 1 when renewed, 0 when the lease was lost.
if not holds_lease(KEYS[1], ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], now_ms() + tonumber(ARGV[2]))
return 1
