-- Adds CPU time to a tenant's ledger of the rolling minute.
-- KEYS[1] CPU ledger (hash: unix second -> CPU us); ARGV[1] us.
local second = math.floor(now_ms() / 1000)
redis.call('HINCRBY', KEYS[1], second, ARGV[1])
redis.call('PEXPIRE', KEYS[1], 120000)
return 1
